"""Where a run stands (Progress, RNG states) and the files it writes into its folder (RunFiles)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnnclf.config import Config, to_yaml
from rnnclf.runs.atomic import append_jsonl, atomic_write_text, read_jsonl, write_json
from rnnclf.runs.checkpoint import save_checkpoint
from rnnclf.training import plots
from rnnclf.training.mlflow_logger import MlflowLog
from rnnclf.training.tensorboard import TensorBoardLog


def empty_totals() -> dict[str, Any]:
    return {"loss_sum": 0.0, "correct": 0, "seen": 0}


@dataclass
class Progress:
    """Where a run stands; everything here goes into last.pt so a resume can continue."""

    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # batches of that epoch already trained on
    global_step: int = 0
    best_val_acc: float = -1.0  # val accuracy of the best epoch (chosen by train.select_by)
    best_val_loss: float = float("inf")  # val loss of the best epoch
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    skipped_steps: int = 0  # steps of this epoch skipped for a non-finite loss or gradient
    pretrained_coverage: float | None = None  # share of the vocabulary the word vectors covered
    totals: dict[str, Any] = field(default_factory=empty_totals)  # the epoch's sums so far

    def next_epoch(self) -> None:
        """The epoch in progress is done: counters of the next one start at zero."""
        self.epoch += 1
        self.step_in_epoch = 0
        self.totals = empty_totals()
        self.skipped_steps = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def enabled_loggers(config: Config) -> list[str]:
    """train.loggers, with train.tensorboard: true (the older switch) adding tensorboard."""
    loggers = list(config.train.loggers)
    if config.train.tensorboard and "tensorboard" not in loggers:
        loggers.append("tensorboard")
    return loggers


class RunFiles:
    """Everything a run writes into its folder: config.yaml, best.pt / last.pt, metrics.jsonl,
    summary.json, the curves plot, TensorBoard events, the MLflow run.

    Under torchrun every rank holds one, and only rank 0's writes (`writes`): this class is where
    "only rank 0 writes files" is decided, so the training loop never asks which rank it is.
    """

    def __init__(self, folder: Path, writes: bool) -> None:
        self.folder, self.writes = folder, writes

    def write_config(self, config: Config) -> None:
        if self.writes:
            atomic_write_text(self.folder / "config.yaml", to_yaml(config))

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        if self.writes:
            save_checkpoint(self.folder / name, state)

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.writes:
            append_jsonl(self.folder / "metrics.jsonl", record)

    def metrics(self) -> list[dict[str, Any]]:
        """metrics.jsonl's records (none on ranks that do not write)."""
        return read_jsonl(self.folder / "metrics.jsonl") if self.writes else []

    def write_summary(self, summary: dict[str, Any], log: Callable[[str], None]) -> None:
        """summary.json, and the loss/accuracy curves of its epochs when matplotlib is there."""
        if self.writes:
            write_json(self.folder / "summary.json", summary)
            plots.try_plot(lambda: plots.plot_curves(summary["epochs"],
                                                     self.folder / plots.CURVES,
                                                     self.folder.name), log)

    def open_tensorboard(self, config: Config, start_step: int) -> TensorBoardLog | None:
        """The run's TensorBoard log when train.tensorboard is on (the caller closes it)."""
        if self.writes and "tensorboard" in enabled_loggers(config):
            return TensorBoardLog(self.folder, config, start_step)
        return None

    def open_mlflow(self, config: Config, resuming: bool, log: Callable[[str], None]
                    ) -> MlflowLog | None:
        """The run's MLflow run when train.loggers has mlflow (the caller exits it)."""
        if not (self.writes and "mlflow" in enabled_loggers(config)):
            return None
        tracker = MlflowLog(self.folder, config, resuming, log)
        if resuming:
            tracker.log_missing_epochs(self.metrics())
        return tracker

    def reconcile_metrics(self, progress: Progress, last_record: dict[str, Any] | None) -> None:
        """Make metrics.jsonl agree with last.pt before a resume appends to it.

        A kill can land between saving last.pt and appending that epoch's line (the line is then
        missing; last.pt carries a copy), or in the middle of the append (a torn line, which the
        next append would glue onto). Rewriting the file atomically from its whole records fixes
        both.
        """
        if not self.writes:
            return
        path = self.folder / "metrics.jsonl"
        records = read_jsonl(path) if path.is_file() else []
        kept = [r for r in records if isinstance(r, dict) and r.get("epoch", 0) <= progress.epoch]
        epochs = {r.get("epoch") for r in kept}
        if last_record is not None and last_record.get("epoch") not in epochs \
                and last_record.get("epoch") == progress.epoch:
            kept.append(last_record)
        text = "".join(json.dumps(record) + "\n" for record in kept)
        if not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text:
            atomic_write_text(path, text)
