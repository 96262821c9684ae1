"""The `rnnclf` command: parse arguments, load the config, call one library function."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rnnclf import __version__
from rnnclf.errors import Interrupted, RnnclfError, StoppedAtOnce

if TYPE_CHECKING:
    from rnnclf.predict import Prediction

app = typer.Typer(
    name="rnnclf",
    help="Train, evaluate and use recurrent (RNN/LSTM/GRU) text classifiers on AG News.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _runs_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    return Path(os.environ.get("RNNCLF_RUNS_DIR", "runs"))


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


def _split_train_args(args: list[str]) -> tuple[Path | None, list[str]]:
    """Positional arguments: at most one config file, then any number of section.key=value."""
    config_path: Path | None = None
    overrides: list[str] = []
    for arg in args:
        if "=" in arg and not Path(arg).exists():
            overrides.append(arg)
        elif config_path is None and not overrides:
            config_path = Path(arg)
        else:
            raise RnnclfError(f"unexpected argument {arg!r}; give one config file, then "
                              "overrides as section.key=value")
    return config_path, overrides


@app.command()
def train(
    args: Annotated[list[str] | None, typer.Argument(
        help="CONFIG.yaml (default: the built-in experiment), then overrides "
             "section.key=value, e.g. model.cell=lstm train.epochs=3.",
        show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="An override section.key=value (repeatable).")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue the run in this folder from its last.pt.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace the run already in the run folder.")] = False,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved config as YAML and exit without training.")
    ] = False,
) -> None:
    """Train a classifier; writes runs/<name>/ (config.yaml, metrics.jsonl, best.pt, last.pt)."""
    from rnnclf.config import load_config, to_yaml
    from rnnclf.train import fit, load_resume_config

    config_path, overrides = _split_train_args(args or [])
    overrides += set_ or []
    if resume is not None:
        if config_path is not None:
            raise RnnclfError("--resume continues a run with its saved config; drop the config "
                              "file argument")
        config = load_resume_config(resume, overrides)
    else:
        config = load_config(config_path, overrides)
    if print_config:
        typer.echo(to_yaml(config), nl=False)
        return
    fit(config, overwrite=overwrite, resume_dir=resume, log=typer.echo)


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="A best.pt/last.pt (default: the newest run's best.pt).", show_default=False)] = None,
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    data: Annotated[Path | None, typer.Option(
        help="Evaluate on this AG News-format CSV instead.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    runs_dir: Annotated[Path | None, typer.Option(
        help="Where to look for the newest run ($RNNCLF_RUNS_DIR, else ./runs).")] = None,
) -> None:
    """Accuracy, macro-F1, per-class table and confusion matrix; writes eval.json beside it."""
    from rnnclf.checkpoint import newest_run_checkpoint
    from rnnclf.evaluate import evaluate_checkpoint
    from rnnclf.metrics import format_report

    if split not in ("test", "val"):
        raise RnnclfError(f"--split {split!r} is not allowed; use test or val (or --data FILE)")
    if checkpoint is None:
        checkpoint = newest_run_checkpoint(_runs_dir(runs_dir))
        if not json_output:
            typer.echo(f"checkpoint: {checkpoint}", err=True)
    report = evaluate_checkpoint(checkpoint, split=split, data_file=data, device_name=device)
    if json_output:
        typer.echo(json.dumps(report))
    else:
        typer.echo(f"{report['data']}")
        typer.echo(format_report(report))


PREDICT_CHUNK = 1024  # texts read, classified and printed at a time: memory stays bounded


def _stdin_lines() -> Iterator[str]:
    """Lines of stdin without their line ends; bytes that are not UTF-8 become U+FFFD."""
    binary = getattr(sys.stdin, "buffer", None)
    if binary is None:  # a replaced text-only stdin (tests, embedding)
        for line in sys.stdin:
            yield line.rstrip("\r\n")
        return
    for raw in binary:
        yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _read_texts(texts: list[str]) -> Iterator[str]:
    """The texts to classify, in order; an empty one stops with where it came from."""
    for position, text in enumerate(texts, 1):
        if text == "-":
            for number, line in enumerate(_stdin_lines(), 1):
                if not line or line.isspace():
                    raise RnnclfError(f"stdin line {number} is empty; give one text per line "
                                      "(remove empty lines)")
                yield line
        elif not text or text.isspace():
            raise RnnclfError(f"text {position} is empty; give some words to classify")
        else:
            yield text


def _chunks(items: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(
        help="Texts to classify; '-' reads one text per line from stdin.", show_default=False)],
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", "-c", help="A best.pt (default: the newest run's best.pt).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1,
                                       help="How many labels to show per text.")] = 1,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    runs_dir: Annotated[Path | None, typer.Option(
        help="Where to look for the newest run ($RNNCLF_RUNS_DIR, else ./runs).")] = None,
) -> None:
    """Print each text's most probable label(s) and probability."""
    from rnnclf.checkpoint import newest_run_checkpoint
    from rnnclf.predict import Predictor

    if checkpoint is None:
        checkpoint = newest_run_checkpoint(_runs_dir(runs_dir))
        if not json_output:
            typer.echo(f"checkpoint: {checkpoint}", err=True)
    predictor = Predictor(checkpoint, device)
    printed = 0
    for chunk in _chunks(_read_texts(texts), PREDICT_CHUNK):
        printed += len(chunk)
        _print_predictions(predictor.predict(chunk, top_k=top_k), json_output)
    if not printed:
        raise RnnclfError("no text to classify; pass texts as arguments or '-' with lines on stdin")


def _print_predictions(results: list[Prediction], json_output: bool) -> None:
    for result in results:
        if json_output:
            typer.echo(json.dumps({
                "text": result.text if len(result.text) <= 200 else result.text[:200] + "...",
                "label": result.labels[0], "probability": result.probabilities[0],
                "top_k": [{"label": label, "probability": probability}
                          for label, probability in zip(result.labels, result.probabilities)],
                "truncated": result.truncated}))
        else:
            shown = "  ".join(f"{label}  {probability:.2f}"
                              for label, probability in zip(result.labels, result.probabilities))
            note = "  (truncated)" if result.truncated else ""
            typer.echo(shown + note)


def _click_class(name: str) -> type[Exception]:
    """Click's exception classes, wherever this Typer keeps Click (vendored in typer >= 0.2x)."""
    return next(kind for kind in typer.BadParameter.__mro__ if kind.__name__ == name)


_USAGE_ERROR = _click_class("UsageError")
_CLICK_EXCEPTION = _click_class("ClickException")


def _one_line(error: BaseException) -> str:
    """The message on one line, whatever a file name or a value in it held."""
    return " ".join(str(error).split("\n")).replace("\r", " ")


def main() -> None:
    """Console entry point: user errors become one line and a non-zero exit, never a traceback."""
    try:
        code = app(standalone_mode=False)  # Click's own errors come back here as exceptions
    except Interrupted as error:  # a graceful stop the user asked for: not an error
        typer.echo(f"interrupted: {_one_line(error)}", err=True)
        sys.exit(error.exit_code)
    except RnnclfError as error:
        typer.echo(f"error: {_one_line(error)}", err=True)
        sys.exit(error.exit_code)
    except _USAGE_ERROR as error:  # unknown option, missing argument, bad option value
        where = error.ctx.command_path if error.ctx is not None else "rnnclf"
        message = _one_line(error.format_message()).rstrip(".")
        typer.echo(f"error: {message}; see {where} --help", err=True)
        sys.exit(error.exit_code)
    except _CLICK_EXCEPTION as error:
        typer.echo(f"error: {_one_line(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:  # end of input at a prompt
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except StoppedAtOnce as error:
        typer.echo("interrupted: stopped at once; files already written are intact (last.pt is "
                   "the last saved state)", err=True)
        sys.exit(error.exit_code)
    except BrokenPipeError:
        # The reader went away (`rnnclf predict - | head`): stop quietly, as Unix tools do.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    sys.exit(code if isinstance(code, int) else 0)
