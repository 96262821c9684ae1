"""Ensembles of classifiers: their probabilities averaged (`train.ensemble`,
`train.ensemble_members`)."""

from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleClassifier(nn.Module):
    """Several classifiers of one vocabulary and label set, averaged (`train.ensemble`), of one
    architecture or several.

    Returns the log of the members' mean probability: softmax and argmax read it like logits
    (softmax of it is that mean), and cross-entropy on it is the ensemble's own loss.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return log_mean_probability([member(tokens, lengths).float() for member in self.members])


def log_mean_probability(member_logits: list[torch.Tensor]) -> torch.Tensor:
    """Members' logits, each (B, C) -> log of their mean softmax probability (B, C)."""
    log_probabilities = torch.stack([logits.log_softmax(dim=1) for logits in member_logits])
    return torch.logsumexp(log_probabilities, dim=0) - math.log(len(member_logits))
