"""`rnnclf predict`: classify texts (arguments or stdin lines), or every row of a file."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rnnclf.cli.arguments import (
    DeviceOption,
    PrecisionOption,
    QuantizeOption,
    RunsDirOption,
    checkpoint_or_newest,
    quantization_name,
)
from rnnclf.errors import RnnclfError

if TYPE_CHECKING:
    from rnnclf.inference.predictor import Prediction

PREDICT_CHUNK = 1024  # texts read, classified and printed at a time: memory stays bounded


def predict(
    texts: Annotated[list[str] | None, typer.Argument(
        help="Texts to classify; '-' reads one text per line from stdin.",
        show_default=False)] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", "-c", help="A best.pt (default: the newest run's best.pt).")] = None,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", "-k", min=1, help="How many labels to show per text, most probable first "
        "(default 1; a multi-label model shows every label above its threshold).",
        show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    runs_dir: RunsDirOption = None,
    input_file: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Classify every row of this .csv/.tsv/.jsonl/.parquet file "
        "(Parquet needs rnnclf[parquet]).")] = None,
    output_file: Annotated[Path | None, typer.Option(
        "--output", "-o", help="With --input: write rows plus predicted_label and probability "
        "here (.csv/.tsv/.jsonl/.parquet; '-' for JSON lines on stdout).")] = None,
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
    quantize: QuantizeOption = None,
) -> None:
    """Print each text's most probable label(s) and probability, or classify a whole file."""
    if (input_file is None) != (output_file is None):
        raise RnnclfError("--input and --output go together; give both (or texts instead)")
    if input_file is not None and texts:
        raise RnnclfError("give texts or --input FILE, not both")
    checkpoint = checkpoint_or_newest(checkpoint, runs_dir, quiet=json_output)
    if input_file is not None and output_file is not None:
        from rnnclf.inference.files import predict_file

        stats = predict_file(checkpoint, input_file, output_file, text_field, header,
                             all_probabilities, batch_size, device_name=device,
                             progress=progress, precision=precision,
                             quantize=quantization_name(quantize))
        note = f"; {stats.empty} rows without text left unlabelled" if stats.empty else ""
        typer.echo(f"classified {stats.rows} rows -> {output_file}{note}", err=True)
        return
    _predict_texts(texts or [], checkpoint, top_k, json_output, device, precision,
                   quantization_name(quantize))


def _predict_texts(texts: list[str], checkpoint: Path, top_k: int | None, json_output: bool,
                   device: str, precision: str, quantize: str | None = None) -> None:
    """Classify and print the texts chunk by chunk, so that stdin may be endless."""
    from rnnclf.inference.predictor import Predictor

    predictor = Predictor(checkpoint, device, precision, quantize)
    printed = 0
    for chunk in _chunks(_read_texts(texts), PREDICT_CHUNK):
        printed += len(chunk)
        results = predictor.predict(chunk, top_k=top_k or 1)
        if predictor.multi_label:
            _print_multilabel(results, json_output, show_top_k=top_k is not None)
        else:
            _print_predictions(results, json_output)
    if not printed:
        raise RnnclfError("no text to classify; pass texts as arguments or '-' with lines on stdin")


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


def _print_multilabel(results: list[Prediction], json_output: bool, show_top_k: bool) -> None:
    """Every label at or above its threshold; with -k, the top k by probability instead (text:
    a '*' marks those above their threshold; JSON always has both)."""
    for result in results:
        chosen = result.chosen or []
        if json_output:
            typer.echo(json.dumps({
                "text": result.text if len(result.text) <= 200 else result.text[:200] + "...",
                "labels": chosen, "probabilities": result.chosen_probabilities or [],
                "top_k": [{"label": label, "probability": probability,
                           "above_threshold": label in chosen}
                          for label, probability in zip(result.labels, result.probabilities)],
                "truncated": result.truncated}))
            continue
        if show_top_k:
            shown = "  ".join(f"{label}  {probability:.2f}{'*' if label in chosen else ''}"
                              for label, probability in zip(result.labels, result.probabilities))
        else:
            shown = "  ".join(f"{label}  {probability:.2f}" for label, probability
                              in zip(chosen, result.chosen_probabilities or [])) \
                or "(no label above its threshold)"
        typer.echo(shown + ("  (truncated)" if result.truncated else ""))
