"""`rnnclf eval`: evaluate a checkpoint on the test or validation split, or on a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rnnclf.cli.arguments import (
    DeviceOption,
    PrecisionOption,
    RunsDirOption,
    checkpoint_or_newest,
)
from rnnclf.errors import RnnclfError


def eval_(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="A best.pt/last.pt (default: the newest run's best.pt).", show_default=False)] = None,
    split: Annotated[str, typer.Option(help="test or val.")] = "test",
    data: Annotated[Path | None, typer.Option(
        help="Evaluate on this file (in the format the model was trained on) instead.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    runs_dir: RunsDirOption = None,
) -> None:
    """Accuracy, macro-F1, per-class table and confusion matrix; writes eval.json beside it."""
    from rnnclf.inference.evaluate import evaluate_checkpoint
    from rnnclf.inference.metrics import format_report
    from rnnclf.inference.multilabel_metrics import format_multilabel_report

    if split not in ("test", "val"):
        raise RnnclfError(f"--split {split!r} is not allowed; use test or val (or --data FILE)")
    checkpoint = checkpoint_or_newest(checkpoint, runs_dir, quiet=json_output)
    report = evaluate_checkpoint(checkpoint, split=split, data_file=data, device_name=device,
                                 log=lambda message: typer.echo(message, err=True),
                                 precision=precision)
    if json_output:
        typer.echo(json.dumps(report))
    else:
        typer.echo(f"{report['data']}")
        typer.echo(format_multilabel_report(report) if report.get("multi_label")
                   else format_report(report))
