"""Dropout with a cheap mask on the CPU (same distribution as `nn.Dropout`).

ATen's CPU dropout draws one Bernoulli sample per element, which made the embedding dropout a
noticeable share of a BiGRU training step. Here each element takes 16 bits of 64-bit draws from
the same generator (`torch.manual_seed` still makes a run repeatable) and keeps its value when
they fall under a threshold: mask and multiply take a fraction of the time (docs/benchmarks.md).
The keep probability is rounded to a multiple of 1/65536 (exact for p = 0.25, 0.5, ...; off by
at most 8e-6 otherwise) and kept values are scaled by its inverse, so the expected output equals
the input, as with `nn.Dropout`. On other devices ATen's dropout (Philox, fused) is used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16  # a 16-bit draw per element


def keep_mask(shape: torch.Size | tuple[int, ...], keep: float,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A CPU tensor of `shape`: 1/q where the element is kept (probability q, `keep` rounded to
    a multiple of 1/65536), 0 where it is dropped."""
    count = math.prod(shape)
    kept_levels = min(max(round(keep * _LEVELS), 0), _LEVELS)
    if kept_levels in (0, _LEVELS):  # (the threshold below must fit in int16)
        return torch.full(shape, float(kept_levels > 0), dtype=dtype)
    # Four uniform 16-bit draws per int64; random_(min, None) fills all 64 bits.
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
    draws = words.view(torch.int16)[:count].view(shape)  # uniform over [-32768, 32767]
    return (draws < kept_levels - _LEVELS // 2).to(dtype).mul_(_LEVELS / kept_levels)


def dropout(inputs: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(inputs, p, training)`, with a cheaper mask on the CPU (not in place)."""
    if not training or p == 0.0:
        return inputs
    if inputs.device.type != "cpu" or p >= 1.0 or not inputs.is_floating_point():
        return F.dropout(inputs, p, training)
    return inputs * keep_mask(inputs.shape, 1.0 - p, inputs.dtype)


class Dropout(nn.Dropout):
    """`nn.Dropout` through `dropout` above (no state: checkpoints are unchanged)."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return dropout(inputs, self.p, self.training)
