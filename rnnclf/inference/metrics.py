"""Classification metrics from predictions: accuracy, per-class P/R/F1, macro-F1, balanced
accuracy, confusion."""

from __future__ import annotations

from typing import Any

import torch


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """(C, C) counts; row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_scores(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F1 per class (each (C,), float64) from a (C, C) confusion matrix;
    0 where a class was never predicted (precision) or never present (recall)."""
    matrix = matrix.double()
    true_positive = matrix.diag()
    predicted = matrix.sum(0)
    actual = matrix.sum(1)
    precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), 0.0)
    recall = torch.where(actual > 0, true_positive / actual.clamp(min=1), 0.0)
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-12), 0.0)
    return precision, recall, f1


def macro_f1(matrix: torch.Tensor) -> float:
    """The unweighted mean of the classes' F1 (every class counts, as in eval's macro-F1)."""
    return per_class_scores(matrix)[2].mean().item()


def balanced_accuracy(matrix: torch.Tensor) -> float:
    """The mean recall over the classes present in the labels (scikit-learn's
    balanced_accuracy_score: a class with no true rows has no recall and is left out)."""
    present = matrix.sum(1) > 0
    if not bool(present.any()):
        return 0.0
    return per_class_scores(matrix)[1][present].mean().item()


def classification_report(labels: torch.Tensor, predictions: torch.Tensor,
                          label_names: list[str]) -> dict[str, Any]:
    matrix = confusion_matrix(labels, predictions, len(label_names)).double()
    precision, recall, f1 = per_class_scores(matrix)
    actual = matrix.sum(1)
    total = matrix.sum().item()
    return {
        "accuracy": matrix.diag().sum().item() / total if total else 0.0,
        "macro_f1": f1.mean().item(),
        "balanced_accuracy": balanced_accuracy(matrix),
        "num_examples": int(total),
        "per_class": {
            name: {"precision": precision[i].item(), "recall": recall[i].item(),
                   "f1": f1[i].item(), "support": int(actual[i].item())}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": matrix.long().tolist(),
        "labels": list(label_names),
    }


def format_report(report: dict[str, Any]) -> str:
    """A table for people: per-class precision/recall/F1/support, then the confusion matrix."""
    names = report["labels"]
    width = max(10, *(len(name) for name in names))
    balanced = report.get("balanced_accuracy")  # eval.json files written before it lack it
    lines = [f"accuracy  {report['accuracy']:.4f}   macro-F1  {report['macro_f1']:.4f}   "
             + (f"balanced accuracy  {balanced:.4f}   " if balanced is not None else "")
             + f"({report['num_examples']} examples)", "",
             f"{'class':<{width}}  precision  recall      f1  support"]
    for name in names:
        row = report["per_class"][name]
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:6.4f}  {row['support']:7d}")
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * width + "  " + "  ".join(f"{name[:8]:>8}" for name in names)]
    for name, counts in zip(names, report["confusion_matrix"]):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{count:8d}" for count in counts))
    return "\n".join(lines)
