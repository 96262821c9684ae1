"""Multi-label figures: threshold tuning, micro/macro-F1 and subset accuracy against hand-counted
cases, additive validation sums (what DDP all-reduces), and the sigmoid-averaging ensemble."""

from __future__ import annotations

import pytest
import torch

from rnnclf.inference.multilabel_metrics import (
    THRESHOLD_GRID,
    checkpoint_thresholds,
    multilabel_report,
    split_metrics,
    validation_metrics,
    validation_sums,
)
from rnnclf.models.ensemble import EnsembleClassifier, logit_of_mean_sigmoid


def logits_of(probabilities: list[list[float]]) -> torch.Tensor:
    return torch.logit(torch.tensor(probabilities, dtype=torch.float64)).float()


def test_thresholds_maximise_each_labels_f1_nearest_half_on_ties() -> None:
    # label 0: positives at 0.32, negatives at 0.1 -> any threshold in (0.1, 0.32] is perfect;
    # label 1: never on -> keeps 0.5; label 2: positives 0.9, negatives 0.62 -> (0.62, 0.9].
    probabilities = [[0.32, 0.2, 0.9], [0.1, 0.1, 0.62], [0.32, 0.3, 0.62], [0.1, 0.05, 0.9]]
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float32)
    metrics = split_metrics(logits_of(probabilities), labels)
    assert metrics["thresholds"] == [0.3, 0.5, 0.65]
    # At 0.5: label 0 is never on (2 misses), label 2 is on everywhere (2 hits, 2 false alarms).
    assert metrics["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    assert metrics["accuracy"] == metrics["micro_f1"]  # what picks best.pt
    assert metrics["macro_f1"] == pytest.approx((0 + 0 + 2 * 2 / (2 * 2 + 2)) / 3)
    assert metrics["subset_accuracy"] == pytest.approx(1 / 4)  # only row 4 is wholly right


def test_report_at_given_thresholds_matches_hand_counts() -> None:
    probabilities = [[0.9, 0.2], [0.6, 0.7], [0.3, 0.8], [0.1, 0.1]]
    labels = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.float32)
    report = multilabel_report(logits_of(probabilities), labels, ["x", "y"], [0.5, 0.75])
    # x predicted on rows 1, 2 (tp 1, fp 1, fn 1); y on row 3 only (tp 1, fn 1).
    assert report["per_label"]["x"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "threshold": 0.5})
    assert report["per_label"]["y"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "threshold": 0.75})
    assert report["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert report["subset_accuracy"] == pytest.approx(2 / 4)  # rows 1 and 4
    assert report["hamming_loss"] == pytest.approx(3 / 8)
    assert report["multi_label"] is True and report["num_examples"] == 4


def test_validation_sums_add_up_over_batches() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 5, generator=generator)
    labels = (torch.rand(37, 5, generator=generator) < 0.3).float()
    whole = validation_sums(logits, labels)
    parts = validation_sums(logits[:20], labels[:20]) + validation_sums(logits[20:], labels[20:])
    assert torch.allclose(whole, parts)
    assert len(whole) == 3 + 3 * len(THRESHOLD_GRID) * 5
    metrics = validation_metrics(parts, 5)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    assert metrics["loss"] == pytest.approx(loss, rel=1e-6)
    chunked, whole_split = split_metrics(logits, labels, chunk_rows=8), split_metrics(logits,
                                                                                      labels)
    assert chunked.pop("thresholds") == whole_split.pop("thresholds")
    assert chunked == pytest.approx(whole_split)


def test_checkpoint_without_thresholds_decides_at_half() -> None:
    assert checkpoint_thresholds({}, 3) == [0.5, 0.5, 0.5]
    assert checkpoint_thresholds({"thresholds": [0.2, 0.7]}, 3) == [0.5, 0.5, 0.5]  # wrong size
    assert checkpoint_thresholds({"thresholds": [0.2, 0.7, 0.9]}, 3) == [0.2, 0.7, 0.9]


class Fixed(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_multi_label_ensemble_averages_sigmoid_probabilities() -> None:
    first = torch.tensor([[3.0, -2.0, 40.0]])
    second = torch.tensor([[-1.0, -2.0, -40.0]])
    ensemble = EnsembleClassifier([Fixed(first), Fixed(second)], multi_label=True)
    out = ensemble(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, dtype=torch.long))
    expected = (first.sigmoid() + second.sigmoid()) / 2
    assert torch.allclose(out.sigmoid(), expected, atol=1e-6)
    assert torch.isfinite(logit_of_mean_sigmoid([first, second])).all()
    softmax_ensemble = EnsembleClassifier([Fixed(first), Fixed(second)])  # single-label: as before
    assert not torch.allclose(softmax_ensemble(None, None).sigmoid(), expected)
