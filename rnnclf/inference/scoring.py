"""A model's logits for a whole split, and its mean loss and accuracy there (no gradients)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rnnclf.data.batches import eval_batches, eval_order
from rnnclf.data.dataset import EncodedSplit
from rnnclf.inference.multilabel_metrics import is_multi_hot, split_metrics


@torch.inference_mode()
def predict_split(model: nn.Module, split: EncodedSplit, batch_size: int, max_length: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) for every row, in the split's row order; and the per-row labels."""
    model.eval()
    # Logits stay on the device until the end: one copy back instead of one sync per batch.
    chunks = [model(batch.tokens.to(device, non_blocking=True), batch.lengths).float()
              for batch in eval_batches(split, batch_size, max_length)]
    logits = torch.cat(chunks).cpu()
    ordered = torch.empty_like(logits)
    ordered[eval_order(split, max_length)] = logits
    return ordered, split.labels


def evaluate(model: nn.Module, split: EncodedSplit, batch_size: int, max_length: int,
             device: torch.device) -> dict[str, Any]:
    """Mean cross-entropy loss and accuracy over `split` (one process; under DDP the trainer
    shares the rows out with rnnclf.training.distributed.evaluate_sharded). Multi-label:
    rnnclf.inference.multilabel_metrics.validation_metrics."""
    logits, labels = predict_split(model, split, batch_size, max_length, device)
    if is_multi_hot(labels):  # data.multi_label: also each label's tuned threshold
        return split_metrics(logits, labels)
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    return {"loss": loss, "accuracy": accuracy}
