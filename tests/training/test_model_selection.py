"""train.select_by: which validation figure picks best.pt and drives early stopping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from robustness_support import tiny_overrides, write_dataset

from rnnclf.config import load_config
from rnnclf.errors import RnnclfError
from rnnclf.runs.atomic import read_jsonl
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.training import trainer as train_module
from rnnclf.training.trainer import fit

# Scripted validation results per epoch: accuracy peaks at epoch 2, loss bottoms out at epoch 3,
# macro-F1 peaks at epoch 4.
SCRIPTED = [{"accuracy": 0.50, "loss": 1.00, "macro_f1": 0.30},
            {"accuracy": 0.70, "loss": 0.90, "macro_f1": 0.35},
            {"accuracy": 0.60, "loss": 0.80, "macro_f1": 0.40},
            {"accuracy": 0.65, "loss": 0.85, "macro_f1": 0.60},
            {"accuracy": 0.55, "loss": 0.95, "macro_f1": 0.50}]


def scripted_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"epoch": 0}

    def evaluate(*_: Any, **__: Any) -> dict[str, float]:
        result = SCRIPTED[calls["epoch"]]
        calls["epoch"] += 1
        return dict(result)

    monkeypatch.setattr(train_module, "evaluate", evaluate)


@pytest.mark.parametrize(("select_by", "best_epoch", "epochs_run"),
                         [("accuracy", 2, 3), ("loss", 3, 4), ("macro_f1", 4, 5)])
def test_select_by_picks_best_pt_and_stops_on_that_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, select_by: str, best_epoch: int,
        epochs_run: int) -> None:
    scripted_validation(monkeypatch)
    data = write_dataset(tmp_path / "data")
    config = load_config(None, tiny_overrides(data, tmp_path / "runs", epochs=5,
                                              **{"train.select_by": select_by,
                                                 "train.early_stopping_patience": 1}))
    summary = fit(config, log=lambda *_: None)

    assert summary["best_epoch"] == best_epoch
    assert summary["epochs_run"] == epochs_run  # patience 1: one epoch without a better figure
    assert summary["best_val_acc"] == SCRIPTED[best_epoch - 1]["accuracy"]
    best = load_checkpoint(tmp_path / "runs" / "tiny" / "best.pt")["progress"]
    assert best["best_epoch"] == best_epoch
    assert best["best_val_loss"] == SCRIPTED[best_epoch - 1]["loss"]
    assert [record["epoch"] for record in read_jsonl(tmp_path / "runs" / "tiny" /
                                                     "metrics.jsonl")] == list(
        range(1, epochs_run + 1))


def test_select_by_accepts_only_accuracy_or_loss() -> None:
    with pytest.raises(RnnclfError, match="train.select_by"):
        load_config(None, ["train.select_by=f1"])


def test_select_by_macro_f1_records_it_in_metrics_summary_and_best_pt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted_validation(monkeypatch)
    data = write_dataset(tmp_path / "data")
    config = load_config(None, tiny_overrides(data, tmp_path / "runs", epochs=5,
                                              **{"train.select_by": "macro_f1"}))
    summary = fit(config, log=lambda *_: None)

    run = tmp_path / "runs" / "tiny"
    assert [record["val_macro_f1"] for record in read_jsonl(run / "metrics.jsonl")] == [
        result["macro_f1"] for result in SCRIPTED]
    assert summary["best_epoch"] == 4 and summary["best_val_macro_f1"] == 0.60
    assert load_checkpoint(run / "best.pt")["progress"]["best_val_macro_f1"] == 0.60
