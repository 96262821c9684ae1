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
    from rnnclf.inference.predictor import Prediction

app = typer.Typer(
    name="rnnclf",
    help="Train, evaluate and use recurrent (RNN/LSTM/GRU) text classifiers on AG News or "
         "your own CSV/JSON-lines data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _runs_dir(explicit: Path | None) -> Path:
    from rnnclf.config.schema import default_runs_dir

    return explicit if explicit is not None else default_runs_dir()


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
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="Train data-parallel in N processes on this machine (runs "
                               "torchrun; see docs/distributed.md).")] = 1,
) -> None:
    """Train a classifier; writes runs/<name>/ (config.yaml, metrics.jsonl, best.pt, last.pt)."""
    from rnnclf.config.schema import load_config, to_yaml
    from rnnclf.training.distributed import launch, session
    from rnnclf.training.ensemble import fit_ensemble, load_run_config
    from rnnclf.training.trainer import fit

    config_path, overrides = _split_train_args(args or [])
    overrides += set_ or []
    if resume is not None:
        if config_path is not None:
            raise RnnclfError("--resume continues a run with its saved config; drop the config "
                              "file argument")
        config = load_run_config(resume, overrides)
    else:
        config = load_config(config_path, overrides)
    if print_config:
        typer.echo(to_yaml(config), nl=False)
        return
    ensemble = config.train.ensemble > 1
    if ensemble and nproc > 1:
        raise RnnclfError("train.ensemble trains its members one after another in one process; "
                          "drop --nproc, or set train.ensemble=1")
    if nproc > 1:  # the config is valid: start the same command in nproc processes
        relaunched = ["train", *([str(config_path)] if config_path else [])]
        relaunched += [arg for override in overrides for arg in ("--set", override)]
        relaunched += (["--resume", str(resume)] if resume else []) + (
            ["--overwrite"] if overwrite else [])
        raise typer.Exit(launch(nproc, relaunched))
    with session(config.train.device) as dist:
        if ensemble and dist.enabled:
            raise RnnclfError("train.ensemble cannot run under torchrun; train it in one "
                              "process, or set train.ensemble=1")
        if ensemble:
            fit_ensemble(config, overwrite=overwrite, resume_dir=resume, overrides=overrides,
                         log=typer.echo)
        else:
            fit(config, overwrite=overwrite, resume_dir=resume, log=typer.echo, dist=dist)


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="A best.pt/last.pt (default: the newest run's best.pt).", show_default=False)] = None,
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    data: Annotated[Path | None, typer.Option(
        help="Evaluate on this file (in the format the model was trained on) instead.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(
        help="fp32, or bf16 (faster on CPUs with native bf16; CUDA too) or fp16 (CUDA) "
        "autocast.")] = "fp32",
    runs_dir: Annotated[Path | None, typer.Option(
        help="Where to look for the newest run ($RNNCLF_RUNS_DIR, else ./runs).")] = None,
) -> None:
    """Accuracy, macro-F1, per-class table and confusion matrix; writes eval.json beside it."""
    from rnnclf.inference.evaluate import evaluate_checkpoint
    from rnnclf.inference.metrics import format_report
    from rnnclf.runs.checkpoint import newest_run_checkpoint

    if split not in ("test", "val"):
        raise RnnclfError(f"--split {split!r} is not allowed; use test or val (or --data FILE)")
    if checkpoint is None:
        checkpoint = newest_run_checkpoint(_runs_dir(runs_dir))
        if not json_output:
            typer.echo(f"checkpoint: {checkpoint}", err=True)
    report = evaluate_checkpoint(checkpoint, split=split, data_file=data, device_name=device,
                                 log=lambda message: typer.echo(message, err=True),
                                 precision=precision)
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
    texts: Annotated[list[str] | None, typer.Argument(
        help="Texts to classify; '-' reads one text per line from stdin.",
        show_default=False)] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", "-c", help="A best.pt (default: the newest run's best.pt).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1,
                                       help="How many labels to show per text.")] = 1,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(
        help="fp32, or bf16 (faster on CPUs with native bf16; CUDA too) or fp16 (CUDA) "
        "autocast.")] = "fp32",
    runs_dir: Annotated[Path | None, typer.Option(
        help="Where to look for the newest run ($RNNCLF_RUNS_DIR, else ./runs).")] = None,
    input_file: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Classify every row of this .csv/.tsv/.jsonl file.")] = None,
    output_file: Annotated[Path | None, typer.Option(
        "--output", "-o", help="With --input: write rows plus predicted_label and probability "
        "here (.csv/.tsv/.jsonl; '-' for JSON lines on stdout).")] = None,
    text_field: Annotated[str | None, typer.Option(
        help="With --input: the text column(s), comma-separated (default: the model's "
        "data.text_fields for own data, else 'text').")] = None,
    header: Annotated[bool | None, typer.Option(
        "--header/--no-header", help="With --input: whether the CSV starts with a header row "
        "(default: as the model's training file, else yes).", show_default=False)] = None,
    all_probabilities: Annotated[bool, typer.Option(
        "--all-probabilities", help="With --input: add a probability_<label> column per "
        "class.")] = False,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="With --input: texts per model call (default: train.eval_batch_size).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="With --input: show a progress bar.")] = True,
) -> None:
    """Print each text's most probable label(s) and probability, or classify a whole file."""
    from rnnclf.inference.predictor import Predictor
    from rnnclf.runs.checkpoint import newest_run_checkpoint

    if (input_file is None) != (output_file is None):
        raise RnnclfError("--input and --output go together; give both (or texts instead)")
    if input_file is not None and texts:
        raise RnnclfError("give texts or --input FILE, not both")
    if checkpoint is None:
        checkpoint = newest_run_checkpoint(_runs_dir(runs_dir))
        if not json_output:
            typer.echo(f"checkpoint: {checkpoint}", err=True)
    if input_file is not None and output_file is not None:
        from rnnclf.inference.files import predict_file

        stats = predict_file(checkpoint, input_file, output_file, text_field, header,
                             all_probabilities, batch_size, device_name=device,
                             progress=progress, precision=precision)
        note = f"; {stats.empty} rows without text left unlabelled" if stats.empty else ""
        typer.echo(f"classified {stats.rows} rows -> {output_file}{note}", err=True)
        return
    texts = texts or []
    predictor = Predictor(checkpoint, device, precision)
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


@app.command("plot")
def plot(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder (runs/<name>) with metrics.jsonl and/or eval.json.",
        show_default=False)],
) -> None:
    """Redraw curves.png (loss/accuracy per epoch) and confusion.png (after eval) of a run."""
    from rnnclf.training.plots import redraw

    for path in redraw(run_dir):
        typer.echo(f"wrote {path}")


config_app = typer.Typer(help="Show and check YAML configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    args: Annotated[list[str] | None, typer.Argument(
        help="CONFIG.yaml (default: the built-in experiment), then overrides section.key=value.",
        show_default=False)] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add each field's meaning (and choices) as a comment.")] = False,
) -> None:
    """Print the resolved config as YAML, every default filled in."""
    from rnnclf.config.explain import show

    config_path, overrides = _split_train_args(args or [])
    typer.echo(show(config_path, overrides, explain), nl=False)


@config_app.command("validate")
def config_validate(
    paths: Annotated[list[Path], typer.Argument(
        help="YAML config files to check.", show_default=False)],
) -> None:
    """Check config files; exit non-zero with the first problem."""
    from rnnclf.config.explain import validate

    validate(paths, log=typer.echo)


data_app = typer.Typer(help="Get AG News ahead of time; describe a dataset.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("download")
def data_download(
    dir_: Annotated[str, typer.Option(
        "--dir", help="Folder for train.csv/test.csv (default: $RNNCLF_DATA_DIR, else "
        "~/.cache/rnnclf/ag_news).")] = "",
    mirror: Annotated[str | None, typer.Option(
        help="Base URL to download from (default: $RNNCLF_AGNEWS_MIRROR, else the "
        "CharCnn_Keras mirror).")] = None,
) -> None:
    """Download AG News (train.csv, test.csv) and check their MD5s; verifies files already there."""
    from rnnclf.data.info import download_ag_news

    download_ag_news(dir_, mirror, log=typer.echo)


@data_app.command("info")
def data_info(
    args: Annotated[list[str] | None, typer.Argument(
        help="CONFIG.yaml (default: the built-in experiment), then overrides section.key=value.",
        show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Row counts, label balance, text lengths in tokens and vocabulary coverage per split."""
    from rnnclf.config.schema import load_config
    from rnnclf.data.info import dataset_info, format_info

    config_path, overrides = _split_train_args(args or [])
    info = dataset_info(load_config(config_path, overrides).data)
    typer.echo(json.dumps(info) if json_output else format_info(info))


@app.command("export")
def export(
    checkpoint: Annotated[Path, typer.Argument(
        help="A best.pt/last.pt written by `rnnclf train`.", show_default=False)],
    format_: Annotated[str, typer.Option(
        "--format", "-f", help="onnx (needs rnnclf[export]) or torchscript.")] = "onnx",
    out: Annotated[Path | None, typer.Option(
        help="Model file to write (default: beside the checkpoint, e.g. best.onnx).")] = None,
) -> None:
    """Write the model as ONNX or TorchScript, plus <file>.json (vocabulary, labels, text)."""
    from rnnclf.inference.export import export_checkpoint

    model_path, info_path = export_checkpoint(checkpoint, format_, out)
    typer.echo(f"wrote {model_path} and {info_path}")


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
