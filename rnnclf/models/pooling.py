"""Masked pooling of recurrent states over each text's own tokens, and the time indexing it needs.

Shared by the model's reference path and the speed backends (rnnclf/accel/), so every path pools
alike. Batches are padded after each text: `lengths` (B,) counts a text's real tokens.
"""

from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("last", "mean", "max", "attention")


def valid_and_reverse(lengths: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """lengths (B,) -> valid positions (B, T) bool, and the index (B, T) that reverses each text
    within its length and leaves padding in place."""
    positions = torch.arange(width, device=lengths.device)
    valid = positions.unsqueeze(0) < lengths.unsqueeze(1)
    return valid, torch.where(valid, lengths.unsqueeze(1) - 1 - positions, positions)


def take_time(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, T, D), index (B, T) -> values[b, index[b, t], :] as (B, T, D)."""
    return values.gather(1, index.unsqueeze(2).expand(-1, -1, values.size(2)))


def pool_states(states: torch.Tensor, lengths: torch.Tensor, pooling: str,
                attention_projection: nn.Linear | None = None,
                attention_query: torch.Tensor | None = None) -> torch.Tensor:
    """states (B, T, D), zero past each text's end for "mean" -> max, mean or attention pooling
    over each text's own steps, (B, D). lengths (B,) on the states' device."""
    positions = torch.arange(states.size(1), device=states.device)
    valid = (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)  # (B, T, 1)
    if pooling == "mean":
        return states.sum(dim=1) / lengths.unsqueeze(1).to(states.dtype)
    if pooling == "attention":
        assert attention_projection is not None and attention_query is not None
        keys = torch.tanh(attention_projection(states))  # (B, T, D)
        scores = keys @ attention_query  # (B, T)
        # Padded steps get -inf, so weight exactly 0: extra padding never changes the result.
        scores = scores.masked_fill(~valid.squeeze(2), float("-inf"))
        weights = scores.softmax(dim=1).unsqueeze(2)  # (B, T, 1)
        return (weights * states).sum(dim=1)  # (B, D)
    return states.masked_fill(~valid, float("-inf")).amax(dim=1)


def last_states(states: torch.Tensor, lengths: torch.Tensor, hidden_size: int,
                bidirectional: bool) -> torch.Tensor:
    """states (B, T, D) -> the forward direction's state at each text's last token and the
    backward direction's at its first (where each has read the whole text), (B, D)."""
    last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, states.size(2))  # (B, 1, D)
    final = states.gather(1, last).squeeze(1)  # (B, D)
    if not bidirectional:
        return final
    return torch.cat([final[:, :hidden_size], states[:, 0, hidden_size:]], dim=1)  # (B, 2H)
