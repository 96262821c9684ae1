"""The `rnnclf` command: registers one module per command, and maps errors to exit codes.

Each command module parses its arguments, loads the config and calls one library function.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated

import typer

from rnnclf import __version__
from rnnclf.cli.config import config_app
from rnnclf.cli.data import data_app
from rnnclf.cli.eval import eval_
from rnnclf.cli.export import export
from rnnclf.cli.plot import plot
from rnnclf.cli.predict import predict
from rnnclf.cli.pretrain import pretrain
from rnnclf.cli.train import train
from rnnclf.errors import Interrupted, RnnclfError, StoppedAtOnce, one_line

app = typer.Typer(
    name="rnnclf",
    help="Train, evaluate and use recurrent (RNN/LSTM/GRU) text classifiers on AG News or "
         "your own CSV/JSON-lines data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnclf {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """rnnclf: recurrent text classifiers from a YAML file."""


# The order here is the order `rnnclf --help` lists them in.
app.command()(train)
app.command()(pretrain)
app.command("eval")(eval_)
app.command()(predict)
app.command("plot")(plot)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.command("export")(export)


def _click_class(name: str) -> type[Exception]:
    """Click's exception classes, wherever this Typer keeps Click (vendored in typer >= 0.2x)."""
    return next(kind for kind in typer.BadParameter.__mro__ if kind.__name__ == name)


_USAGE_ERROR = _click_class("UsageError")
_CLICK_EXCEPTION = _click_class("ClickException")


def _exit(message: str, code: int) -> None:
    typer.echo(message, err=True)
    sys.exit(code)


def main() -> None:
    """Console entry point: user errors become one line and a non-zero exit, never a traceback."""
    try:
        code = app(standalone_mode=False)  # Click's own errors come back here as exceptions
    except Interrupted as error:  # a graceful stop the user asked for: not an error
        _exit(f"interrupted: {one_line(str(error))}", error.exit_code)
    except RnnclfError as error:
        _exit(f"error: {one_line(str(error))}", error.exit_code)
    except _USAGE_ERROR as error:  # unknown option, missing argument, bad option value
        where = error.ctx.command_path if error.ctx is not None else "rnnclf"
        message = one_line(error.format_message()).rstrip(".")
        _exit(f"error: {message}; see {where} --help", error.exit_code)
    except _CLICK_EXCEPTION as error:
        _exit(f"error: {one_line(error.format_message())}", error.exit_code)
    except typer.Abort:  # end of input at a prompt
        _exit("error: aborted", 1)
    except StoppedAtOnce as error:
        _exit("interrupted: stopped at once; files already written are intact (last.pt is the "
              "last saved state)", error.exit_code)
    except BrokenPipeError:
        # The reader went away (`rnnclf predict - | head`): stop quietly, as Unix tools do.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    sys.exit(code if isinstance(code, int) else 0)
