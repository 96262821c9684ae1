"""optim.class_weights against the training split: one weight per class for the loss.

`balanced` is scikit-learn's `compute_class_weight("balanced")`: n_samples / (n_classes *
count_c), counted on the training split (after the validation rows are held out): with two
classes at 95/5 the weights are about 0.53 and 10. The formula is the one scikit-learn documents
for `class_weight="balanced"` (`sklearn.utils.class_weight.compute_class_weight`, which credits
King & Zeng, "Logistic Regression in Rare Events Data", 2001).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnclf.errors import RnnclfError


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    """Rows per class, in label order."""
    return torch.bincount(labels.long(), minlength=num_classes).tolist()


def balanced_weights(counts: list[int], label_names: list[str]) -> list[float]:
    """n_samples / (n_classes * count_c) for each class c; every class needs a row."""
    missing = [name for name, count in zip(label_names, counts) if count == 0]
    if missing:
        raise RnnclfError(f"optim.class_weights=balanced: class {missing[0]!r} has no row in the "
                          "training split, so it cannot be weighed by its frequency; give one "
                          "weight per class instead (e.g. [1, 19]), or add rows of that class")
    total = sum(counts)
    return [total / (len(counts) * count) for count in counts]


def resolve_class_weights(spec: str | list[float], labels: torch.Tensor,
                          label_names: list[str]) -> list[float] | None:
    """The loss's weight per class (label order), or None for an unweighted loss.

    `spec` is optim.class_weights as loaded: "none", "balanced" or a list of weights, whose
    length only the data can check.
    """
    if spec == "none":
        return None
    if spec == "balanced":
        return balanced_weights(class_counts(labels, len(label_names)), label_names)
    weights = [float(weight) for weight in spec]
    if len(weights) != len(label_names):
        raise RnnclfError(
            f"optim.class_weights has {len(weights)} weight(s) but the training data has "
            f"{len(label_names)} classes ({', '.join(label_names)}); give one weight per class "
            "in that order, or use balanced")
    return weights


def describe_class_weights(weights: list[float], label_names: list[str]) -> str:
    """'neg 0.5263, pos 10.0000' for the log."""
    return ", ".join(f"{name} {weight:.4f}" for name, weight in zip(label_names, weights))


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           class_weights: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Each row's label-smoothed cross-entropy times its true class's weight, averaged over those
    weights: logits (B, C), labels (B,), class_weights (C,) -> a 0-d loss.

    Without label smoothing this is `F.cross_entropy(weight=class_weights)`. With it, that call
    also weighs each row's smoothing term by every class's weight (pytorch/pytorch#104776): at
    95/5 with balanced weights (0.53, 10) and label_smoothing 0.1, the smoothing alone pulls
    every majority row towards 50% minority, so the model calls many majority rows minority
    (docs/imbalance.md). Weighing whole rows is scikit-learn's and Keras' class_weight.
    """
    per_row = F.cross_entropy(logits, labels, reduction="none",
                              label_smoothing=label_smoothing)  # (B,)
    row_weights = class_weights[labels]  # (B,)
    # A batch whose rows all weigh 0 adds nothing (instead of 0 / 0).
    return (per_row * row_weights).sum() / row_weights.sum().clamp(min=1e-12)
