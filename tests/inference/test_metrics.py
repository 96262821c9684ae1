"""Balanced accuracy, macro-F1 from a confusion matrix, and what `rnnclf eval` shows of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from robustness_support import run_cli, tiny_overrides, write_dataset

from rnnclf.config import load_config
from rnnclf.inference.metrics import (
    balanced_accuracy,
    classification_report,
    confusion_matrix,
    format_report,
    macro_f1,
)
from rnnclf.training.trainer import fit

LABELS = torch.tensor([0] * 8 + [1] * 2 + [2] * 2)
PREDICTIONS = torch.tensor([0] * 8 + [0, 1] + [2, 0])


def test_balanced_accuracy_is_the_mean_recall_of_present_classes() -> None:
    report = classification_report(LABELS, PREDICTIONS, ["a", "b", "c", "unseen"])
    # recalls 8/8, 1/2, 1/2; class "unseen" has no rows and is left out (scikit-learn too)
    assert report["balanced_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert report["accuracy"] == pytest.approx(10 / 12)
    assert [report["per_class"][name]["support"] for name in ("a", "b", "c", "unseen")] == [
        8, 2, 2, 0]


def test_balanced_accuracy_and_macro_f1_match_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (300,), generator=generator)
    labels[labels == 3] = 0  # class 3 absent from the labels, predicted now and then
    predictions = torch.randint(0, 4, (300,), generator=generator)
    matrix = confusion_matrix(labels, predictions, 4)
    assert balanced_accuracy(matrix) == pytest.approx(
        metrics.balanced_accuracy_score(labels.numpy(), predictions.numpy()))
    assert macro_f1(matrix) == pytest.approx(metrics.f1_score(
        labels.numpy(), predictions.numpy(), average="macro", labels=[0, 1, 2, 3],
        zero_division=0))


def test_empty_labels_have_zero_balanced_accuracy() -> None:
    assert balanced_accuracy(torch.zeros(3, 3)) == 0.0


def test_text_report_shows_balanced_accuracy_and_support() -> None:
    text = format_report(classification_report(LABELS, PREDICTIONS, ["a", "b", "c"]))
    assert "balanced accuracy  0.6667" in text
    header = text.splitlines()[2].split()
    assert header == ["class", "precision", "recall", "f1", "support"]
    assert text.splitlines()[3].split()[-1] == "8"


def test_an_eval_json_without_balanced_accuracy_still_formats() -> None:
    report = classification_report(LABELS, PREDICTIONS, ["a", "b", "c"])
    del report["balanced_accuracy"]  # eval.json files written before it existed
    assert "balanced accuracy" not in format_report(report)


def test_eval_prints_balanced_accuracy_and_support_in_text_and_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data")
    fit(load_config(None, tiny_overrides(data, tmp_path / "runs", epochs=1)),
        log=lambda *_: None)
    checkpoint = tmp_path / "runs" / "tiny" / "best.pt"
    result = run_cli(["eval", checkpoint, "--json", "--device", "cpu"], capsys)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    recalls = [row["recall"] for row in report["per_class"].values() if row["support"]]
    assert report["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))
    assert sum(row["support"] for row in report["per_class"].values()) == \
        report["num_examples"] == 40
    text = run_cli(["eval", checkpoint, "--device", "cpu"], capsys)
    assert text.code == 0, text.stderr
    assert f"balanced accuracy  {report['balanced_accuracy']:.4f}" in text.stdout
    assert "support" in text.stdout
