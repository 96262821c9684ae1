"""Training batches: rows within a batch come longest first (packing needs no sort)."""

from __future__ import annotations

import torch

from rnnclf.data.batches import bucketed_batches


def test_training_batches_come_longest_first() -> None:
    lengths = torch.randint(1, 40, (500,), generator=torch.Generator().manual_seed(0))
    for indices in bucketed_batches(lengths, 16, torch.Generator().manual_seed(1), 5):
        assert (lengths[indices][:-1] >= lengths[indices][1:]).all()
