"""Ensembles of classifiers: their probabilities averaged (`train.ensemble`,
`train.ensemble_members`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EnsembleClassifier(nn.Module):
    """Several classifiers of one vocabulary and label set, averaged (`train.ensemble`), of one
    architecture or several.

    Returns the log of the members' mean probability: softmax and argmax read it like logits
    (softmax of it is that mean), and cross-entropy on it is the ensemble's own loss. A
    multi-label ensemble averages each label's sigmoid probability instead and returns its
    logit, so sigmoid of the output is that mean.
    """

    def __init__(self, members: list[nn.Module], multi_label: bool = False) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.multi_label = multi_label

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        member_logits = [member(tokens, lengths).float() for member in self.members]
        if self.multi_label:
            return logit_of_mean_sigmoid(member_logits)
        return log_mean_probability(member_logits)


def log_mean_probability(member_logits: list[torch.Tensor]) -> torch.Tensor:
    """Members' logits, each (B, C) -> log of their mean softmax probability (B, C)."""
    log_probabilities = torch.stack([logits.log_softmax(dim=1) for logits in member_logits])
    return torch.logsumexp(log_probabilities, dim=0) - math.log(len(member_logits))


def logit_of_mean_sigmoid(member_logits: list[torch.Tensor]) -> torch.Tensor:
    """Members' logits, each (B, C) -> the logit of their mean sigmoid probability (B, C),
    computed in log space: log(mean p) - log(mean (1 - p))."""
    stacked = torch.stack(member_logits)  # (K, B, C)
    log_mean_yes = torch.logsumexp(F.logsigmoid(stacked), dim=0)
    log_mean_no = torch.logsumexp(F.logsigmoid(-stacked), dim=0)
    return log_mean_yes - log_mean_no  # the log K of both means cancels
