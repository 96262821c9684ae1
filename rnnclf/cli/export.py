"""`rnnclf export`: write a checkpoint's model as ONNX or TorchScript."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnnclf.cli.arguments import ExportFormat


def export(
    checkpoint: Annotated[Path, typer.Argument(
        help="A best.pt/last.pt written by `rnnclf train`.", show_default=False)],
    format_: Annotated[ExportFormat, typer.Option(
        "--format", "-f", help="onnx (needs rnnclf[export]) or torchscript.")] = "onnx",
    out: Annotated[Path | None, typer.Option(
        help="Model file to write (default: beside the checkpoint, e.g. best.onnx).")] = None,
) -> None:
    """Write the model as ONNX or TorchScript, plus <file>.json (vocabulary, labels, text)."""
    from rnnclf.inference.export import export_checkpoint

    model_path, info_path = export_checkpoint(checkpoint, format_, out)
    typer.echo(f"wrote {model_path} and {info_path}")
