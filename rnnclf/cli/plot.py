"""`rnnclf plot`: redraw a run's figures from its metrics.jsonl and eval.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plot(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder (runs/<name>) with metrics.jsonl and/or eval.json.",
        show_default=False)],
) -> None:
    """Redraw curves.png (loss/accuracy per epoch) and confusion.png (after eval) of a run."""
    from rnnclf.training.plots import redraw

    for path in redraw(run_dir):
        typer.echo(f"wrote {path}")
