"""`rnnclf export`: write a checkpoint's model as ONNX or TorchScript."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnnclf.cli.arguments import ExportFormat, QuantizeOption, quantization_name


def export(
    checkpoint: Annotated[Path, typer.Argument(
        help="A best.pt/last.pt written by `rnnclf train`.", show_default=False)],
    format_: Annotated[ExportFormat, typer.Option(
        "--format", "-f", help="onnx (needs rnnclf[export]), torchscript, or checkpoint (an "
        "int8 checkpoint, with --quantize int8).")] = "onnx",
    out: Annotated[Path | None, typer.Option(
        help="Model file to write (default: beside the checkpoint, e.g. best.onnx, "
        "best.int8.onnx, best.int8.pt).")] = None,
    quantize: QuantizeOption = None,
) -> None:
    """Write the model as ONNX or TorchScript, plus <file>.json (vocabulary, labels, text);
    with --quantize int8, an int8 ONNX file or an int8 checkpoint (about 4x smaller)."""
    from rnnclf.inference.export import export_checkpoint

    model_path, info_path = export_checkpoint(checkpoint, format_, out,
                                              quantization_name(quantize))
    typer.echo(f"wrote {model_path} and {info_path}")
