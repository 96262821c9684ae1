"""Length-bucketed, shuffled batches built with tensor ops (no per-sample Python)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from rnnclf.data.dataset import EncodedSplit


@dataclass
class Batch:
    tokens: torch.Tensor  # (B, T) int64, padded with 0
    lengths: torch.Tensor  # (B,) int64, on the CPU (packing wants CPU lengths)
    labels: torch.Tensor  # (B,) int64

    def pin_memory(self) -> Batch:
        """Page-locked copies, so `to(cuda, non_blocking=True)` overlaps with compute."""
        return Batch(self.tokens.pin_memory(), self.lengths, self.labels.pin_memory())

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        return Batch(self.tokens.to(device, non_blocking=non_blocking), self.lengths,
                     self.labels.to(device, non_blocking=non_blocking))


def collate(split: EncodedSplit, indices: torch.Tensor, max_length: int) -> Batch:
    """Gather rows `indices` into a padded (B, T) batch, truncating each to `max_length`."""
    lengths = split.lengths[indices].clamp(max=max_length)
    width = int(lengths.max())
    positions = torch.arange(width)
    starts = split.offsets[indices]
    inside = positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    flat_index = (starts.unsqueeze(1) + positions.unsqueeze(0)).masked_fill(~inside, 0)
    tokens = split.tokens[flat_index].long().masked_fill(~inside, 0)
    return Batch(tokens, lengths, split.labels[indices])


def bucketed_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                     bucket_batches: int = 50) -> list[torch.Tensor]:
    """Shuffled batches of row indices whose texts have similar lengths.

    Rows are shuffled, cut into pools of `bucket_batches` batches, sorted by length inside each
    pool (so padding is small), batched, and the batch order is shuffled again.
    """
    order = torch.randperm(len(lengths), generator=generator)
    pool = batch_size * bucket_batches
    batches: list[torch.Tensor] = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        # Longest text first inside each batch, so packing needs no sort (see model.forward).
        batches.extend(batch.flip(0) for batch in chunk.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def shard_plan(plan: list[torch.Tensor], rank: int, world_size: int) -> list[torch.Tensor]:
    """Rank `rank`'s share of a batch plan: every world_size-th batch, after cutting the plan to a
    multiple of world_size, so all ranks run the same number of steps (none waits at the end)."""
    if world_size == 1:
        return plan
    usable = len(plan) - len(plan) % world_size
    return plan[rank:usable:world_size]


def epoch_batches(split: EncodedSplit, batch_size: int, max_length: int, seed: int, epoch: int,
                  start_step: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
    """The training batches of one epoch; the same (seed, epoch) always gives the same order,
    so a resumed run can skip the `start_step` batches it has already trained on. Data-parallel
    ranks build the same plan (same seed) and each takes its disjoint share (`shard_plan`)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    plan = shard_plan(bucketed_batches(split.lengths, batch_size, generator), rank, world_size)
    for indices in plan[start_step:]:
        yield collate(split, indices, max_length)


def steps_per_epoch(n_rows: int, batch_size: int, bucket_batches: int = 50,
                    world_size: int = 1) -> int:
    """Batches per epoch (per rank, when `world_size` ranks share the epoch)."""
    pool = batch_size * bucket_batches
    full_pools, rest = divmod(n_rows, pool)
    return (full_pools * bucket_batches + -(-rest // batch_size)) // world_size


def eval_batches(split: EncodedSplit, batch_size: int, max_length: int) -> Iterator[Batch]:
    """Batches in length order (little padding); callers that need row order use the indices."""
    for indices in eval_order(split, max_length).split(batch_size):
        yield collate(split, indices, max_length)


def eval_order(split: EncodedSplit, max_length: int) -> torch.Tensor:
    return torch.argsort(split.lengths.clamp(max=max_length), stable=True)
