"""The `rnnclf` command: registers one module per command, and maps errors to exit codes.

Each command module parses its arguments, loads the config and calls one library function.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from rnnclf import __version__
from rnnclf.cli.config import config_app
from rnnclf.cli.data import data_app
from rnnclf.cli.eval import eval_
from rnnclf.cli.export import export
from rnnclf.cli.plot import plot
from rnnclf.cli.predict import predict
from rnnclf.cli.pretrain import pretrain
from rnnclf.cli.serve import serve
from rnnclf.cli.train import train
from rnnclf.errors import Interrupted, RnnclfError, StoppedAtOnce, one_line

# Typer's words for a value outside an option's Literal choices.
_NOT_A_CHOICE = re.compile(r"(?P<value>'[^']*'|\"[^\"]*\") is not one of (?P<choices>'.*?)\.?$")


def choice_refused(error: typer.BadParameter) -> str | None:
    """A refused --option choice in rnnclf's words (as the library says it), else None."""
    match = _NOT_A_CHOICE.search(one_line(error.format_message()))
    if match is None or error.param is None:
        return None
    choices = [choice.strip("'") for choice in match["choices"].split(", ")]
    allowed = " or ".join(choices) if len(choices) == 2 else ", ".join(choices)
    names = [name for name in error.param.opts if name.startswith("--")] or [error.param.name]
    return f"{names[0]} {match['value']} is not allowed; use {allowed}"


class _Commands(TyperGroup):
    """The root group: a refused choice ends as an RnnclfError, like the same mistake caught by
    the library (one line, exit 2), under `main()` and under a test's CliRunner alike."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as error:
            message = choice_refused(error)
            if message is None:
                raise
            raise RnnclfError(message) from None


app = typer.Typer(
    name="rnnclf",
    help="Train, evaluate and use recurrent (RNN/LSTM/GRU) text classifiers on AG News or "
         "your own CSV/JSON-lines data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    # Plain help text: Rich markup would swallow brackets, as in "needs rnnclf[export]".
    rich_markup_mode=None,
    cls=_Commands,
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
app.command("serve")(serve)


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
    # torch warns at import when NumPy is absent; the CLI never needs NumPy, so the warning is
    # noise. Set here, not at `import rnnclf`, which leaves the process's warnings alone.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
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
