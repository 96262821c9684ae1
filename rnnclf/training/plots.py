"""PNG plots of a run: curves.png (loss and accuracy per epoch) and confusion.png (after eval).

matplotlib is an optional extra (`pip install 'rnnclf[plot]'`). Figures are drawn with the Agg
canvas directly (no pyplot), so nothing changes matplotlib's global backend or needs a display.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnnclf.errors import RnnclfError
from rnnclf.runs.atomic import atomic_write_bytes, read_jsonl

INSTALL_HINT = "pip install 'rnnclf[plot]'"
CURVES = "curves.png"


class PlotUnavailable(RnnclfError):
    """matplotlib is not installed."""


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(f"plots need matplotlib; {INSTALL_HINT}") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, lambda handle: handle.write(buffer.getvalue()))
    return path


def plot_curves(records: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Train/val loss and accuracy per epoch (records as in metrics.jsonl) -> PNG at `path`."""
    figure = _figure(10, 4)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [record["epoch"] for record in records]
    best = max(records, key=lambda record: record["val_acc"])
    best_note = {"loss": "", "acc": f" (best {best['val_acc']:.4f}, epoch {best['epoch']})"}
    for axes, metric, name in ((loss_axes, "loss", "loss"), (accuracy_axes, "acc", "accuracy")):
        axes.plot(epochs, [r[f"train_{metric}"] for r in records], "o-", label=f"train {name}")
        axes.plot(epochs, [r[f"val_{metric}"] for r in records], "s-",
                  label=f"val {name}{best_note[metric]}")
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend()
        if len(epochs) < 15:
            axes.set_xticks(epochs)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_confusion(report: dict[str, Any], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class) with class names -> PNG at `path`."""
    names = list(report["labels"])
    counts = report["confusion_matrix"]
    rates = [[count / max(1, sum(row)) for count in row] for row in counts]
    size = max(4.5, 0.7 * len(names) + 2.5)
    figure = _figure(size + 1, size)
    axes = figure.subplots()
    image = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    axes.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), labels=names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(names) <= 20:
        for i, row in enumerate(rates):
            for j, rate in enumerate(row):
                axes.text(j, i, f"{rate:.2f}", ha="center", va="center",
                          color="white" if rate > 0.5 else "black", fontsize=9)
    axes.set_title(title or f"accuracy {report['accuracy']:.4f}, macro-F1 "
                   f"{report['macro_f1']:.4f} ({report['num_examples']} examples)", fontsize=10)
    return _save(figure, path)


def confusion_path(eval_json: Path) -> Path:
    """eval.json -> confusion.png, eval_val.json -> confusion_val.png."""
    return eval_json.with_name(eval_json.stem.replace("eval", "confusion", 1) + ".png")


def redraw(run_dir: Path) -> list[Path]:
    """Draw curves.png from metrics.jsonl and confusion*.png from eval*.json in `run_dir`."""
    if not run_dir.is_dir():
        raise RnnclfError(f"{run_dir} is not a folder; give a run folder (runs/<name>)")
    written = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file() and (records := read_jsonl(metrics)):
        written.append(plot_curves(records, run_dir / CURVES, run_dir.name))
    for eval_json in sorted(run_dir.glob("eval*.json")):
        try:
            report = json.loads(eval_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(report, dict) and "confusion_matrix" in report:
            written.append(plot_confusion(report, confusion_path(eval_json)))
    if not written:
        raise RnnclfError(f"{run_dir} holds no metrics.jsonl or eval.json to plot; train or "
                          "evaluate first")
    return written


def try_plot(draw: Callable[[], Path], log: Callable[[str], None] | None) -> Path | None:
    """Draw a plot if matplotlib is there; otherwise one note on how to get it, never a failure."""
    try:
        return draw()
    except PlotUnavailable:
        if log is not None:
            log(f"note: plots skipped, matplotlib is not installed ({INSTALL_HINT})")
        return None
