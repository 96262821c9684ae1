"""Multi-label figures (`data.multi_label`): sigmoid probabilities against multi-hot labels.

Validation gathers additive sums (loss, exact rows, and true/false positives and false negatives
per label at every threshold of THRESHOLD_GRID), so data-parallel ranks can all-reduce them and
one pass gives both the figures at 0.5 and each label's best threshold. `eval` reports micro-F1,
macro-F1, subset accuracy and per-label precision/recall/F1/support at the stored thresholds.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# Candidate decision thresholds 0.05, 0.10, ..., 0.95; a label's threshold is the one with its
# best F1 on the validation split.
THRESHOLD_GRID = [round(0.05 * step, 2) for step in range(1, 20)]
DEFAULT_THRESHOLD = 0.5
_HEAD = 3  # validation sums start with: loss sum, rows with every label right (at 0.5), rows


def is_multi_hot(labels: torch.Tensor) -> bool:
    """Multi-label targets are (N, C) multi-hot rows; single-label ones are (N,) class indices."""
    return labels.dim() == 2


def binary_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean BCE over rows and labels (0-d). Smoothing moves targets towards 0.5 as Keras'
    BinaryCrossentropy does: y (1 - s) + s / 2."""
    targets = labels.to(logits.dtype)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(logits, targets)


def exact_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rows whose every label is decided right at probability 0.5 (logit 0): 0-d int64."""
    return ((logits >= 0) == (labels > 0.5)).all(dim=1).sum()


def _grid_counts(probabilities: torch.Tensor, truth: torch.Tensor,
                 thresholds: torch.Tensor) -> torch.Tensor:
    """(3, G, C) float64: true positives, false positives, false negatives per threshold."""
    predicted = probabilities.unsqueeze(0) >= thresholds.view(-1, 1, 1)  # (G, N, C)
    truth = truth.unsqueeze(0)
    return torch.stack([(predicted & truth).sum(1), (predicted & ~truth).sum(1),
                        (~predicted & truth).sum(1)]).double()


def validation_sums(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Additive sums of one batch (or a whole split): (3 + 3 G C,) float64."""
    logits = logits.float()
    grid = torch.tensor(THRESHOLD_GRID, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    head = torch.stack([loss.mean(1).double().sum(), exact_rows(logits, labels).double(),
                        torch.tensor(float(len(labels)), dtype=torch.float64,
                                     device=logits.device)])
    counts = _grid_counts(logits.sigmoid(), labels > 0.5, grid)
    return torch.cat([head, counts.flatten()])


def _f1(counts: torch.Tensor) -> torch.Tensor:
    """F1 from (3, ...) true positive / false positive / false negative counts; 0 where 0/0."""
    true_positive, false_positive, false_negative = counts
    denominator = 2 * true_positive + false_positive + false_negative
    return torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), 0.0)


def tune_thresholds(counts: torch.Tensor) -> list[float]:
    """Each label's threshold of best F1 over the grid (`counts`: (3, G, C)); ties go to the
    threshold nearest 0.5, and a label without positives in the split keeps 0.5."""
    f1 = _f1(counts)  # (G, C)
    grid = torch.tensor(THRESHOLD_GRID, dtype=torch.float64)
    # Among thresholds within a hair of the best F1, the one closest to 0.5.
    near_best = f1 >= f1.max(0, keepdim=True).values - 1e-12
    distance = (grid - DEFAULT_THRESHOLD).abs().unsqueeze(1).expand_as(f1)
    chosen = torch.where(near_best, distance, float("inf")).argmin(0)
    has_positives = counts[0, 0] + counts[2, 0] > 0  # tp + fn at any threshold: the positives
    return [THRESHOLD_GRID[int(index)] if positive else DEFAULT_THRESHOLD
            for index, positive in zip(chosen, has_positives.tolist())]


def validation_metrics(sums: torch.Tensor, num_labels: int) -> dict[str, Any]:
    """Validation figures at 0.5 from `validation_sums` (summed over batches and ranks), and
    the tuned thresholds. "accuracy" is micro-F1: what picks best.pt (train.select_by)."""
    sums = sums.double().cpu()
    loss_sum, exact, rows = sums[:_HEAD].tolist()
    counts = sums[_HEAD:].view(3, len(THRESHOLD_GRID), num_labels)
    at_half = counts[:, THRESHOLD_GRID.index(DEFAULT_THRESHOLD)]  # (3, C)
    micro_f1 = _f1(at_half.sum(1)).item()
    return {"loss": loss_sum / max(1.0, rows), "accuracy": micro_f1, "micro_f1": micro_f1,
            "macro_f1": _f1(at_half).mean().item(), "subset_accuracy": exact / max(1.0, rows),
            "thresholds": tune_thresholds(counts)}


def split_metrics(logits: torch.Tensor, labels: torch.Tensor, chunk_rows: int = 4096
                  ) -> dict[str, Any]:
    """validation_metrics of a whole split's logits (N, C) and multi-hot labels (N, C)."""
    # In chunks: the threshold grid makes a (G, rows, C) mask per call.
    sums = sum(validation_sums(logits[start:start + chunk_rows], labels[start:start + chunk_rows])
               for start in range(0, len(labels), chunk_rows))
    return validation_metrics(torch.as_tensor(sums), labels.size(1))


def checkpoint_thresholds(payload: dict[str, Any], num_labels: int) -> list[float]:
    """The per-label thresholds a checkpoint stores; 0.5 each when it has none (a run stopped
    before its first best.pt had them, or a checkpoint from before multi-label)."""
    stored = payload.get("thresholds")
    if isinstance(stored, (list, tuple)) and len(stored) == num_labels \
            and all(isinstance(value, (int, float)) for value in stored):
        return [float(value) for value in stored]
    return [DEFAULT_THRESHOLD] * num_labels


def decisions(probabilities: torch.Tensor, thresholds: list[float]) -> torch.Tensor:
    """(N, C) bool: each label on where its probability reaches its threshold."""
    return probabilities >= torch.tensor(thresholds, dtype=probabilities.dtype,
                                         device=probabilities.device)


def multilabel_report(logits: torch.Tensor, labels: torch.Tensor, label_names: list[str],
                      thresholds: list[float]) -> dict[str, Any]:
    """eval's figures at `thresholds`: micro/macro-F1, subset accuracy, per-label P/R/F1."""
    predicted = decisions(logits.float().sigmoid(), thresholds)
    truth = labels > 0.5
    counts = torch.stack([(predicted & truth).sum(0), (predicted & ~truth).sum(0),
                          (~predicted & truth).sum(0)]).double()  # (3, C)
    true_positive, false_positive, false_negative = counts
    precision = torch.where(true_positive + false_positive > 0,
                            true_positive / (true_positive + false_positive).clamp(min=1), 0.0)
    recall = torch.where(true_positive + false_negative > 0,
                         true_positive / (true_positive + false_negative).clamp(min=1), 0.0)
    f1 = _f1(counts)
    rows = len(labels)
    return {
        "multi_label": True,
        "micro_f1": _f1(counts.sum(1)).item(),
        "macro_f1": f1.mean().item(),
        "subset_accuracy": (predicted == truth).all(1).double().mean().item() if rows else 0.0,
        "hamming_loss": (predicted != truth).double().mean().item() if rows else 0.0,
        "num_examples": rows,
        "per_label": {
            name: {"precision": precision[i].item(), "recall": recall[i].item(),
                   "f1": f1[i].item(), "support": int(truth[:, i].sum().item()),
                   "threshold": thresholds[i]}
            for i, name in enumerate(label_names)
        },
        "thresholds": list(thresholds),
        "labels": list(label_names),
    }


def format_multilabel_report(report: dict[str, Any]) -> str:
    """A table for people: the overall figures, then precision/recall/F1 per label."""
    names = report["labels"]
    width = max(10, *(len(name) for name in names))
    lines = [f"micro-F1  {report['micro_f1']:.4f}   macro-F1  {report['macro_f1']:.4f}   "
             f"subset accuracy  {report['subset_accuracy']:.4f}   "
             f"({report['num_examples']} examples)", "",
             f"{'label':<{width}}  precision  recall      f1  support  threshold"]
    for name in names:
        row = report["per_label"][name]
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:6.4f}  {row['support']:7d}  {row['threshold']:9.2f}")
    return "\n".join(lines)
