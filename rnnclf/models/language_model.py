"""LanguageModel: the classifier's embedding and recurrent encoder trained to predict words.

ULMFiT-style (Howard & Ruder 2018): the forward direction predicts the next token, and the
backward direction of a bidirectional encoder the previous one. The model holds the classifier's
own `embedding` and `rnn` modules under the same names, so its state dict's `embedding.*` and
`rnn.*` entries load into an RNNClassifier as they are; only `heads.*` is the language model's.

Each text starts from a zero state, as in the classifier. In a stacked bidirectional encoder a
direction's upper layers see only that direction's lower states (the other half of their input
is zero), so neither direction ever sees the token it predicts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.pooling import take_time, valid_and_reverse

OUTPUTS = ("adaptive", "tied")
# Adaptive softmax clusters: the most frequent words in the head, rarer ones in smaller tails.
ADAPTIVE_CUTOFFS = (2000, 10000)

__all__ = ["OUTPUTS", "LanguageModel", "TiedSoftmax", "lm_targets"]


class TiedSoftmax(nn.Module):
    """A full softmax whose output vectors are the embedding's rows: hidden (N, H) -> a
    projection to the embedding size (when H differs) -> logits over the first `classes` rows."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int, classes: int) -> None:
        super().__init__()
        self.classes = classes
        dim = embedding.embedding_dim
        self.projection = nn.Linear(hidden_size, dim, bias=False) if hidden_size != dim else None
        self.bias = nn.Parameter(torch.zeros(classes))
        # A plain attribute: the embedding's weight stays the classifier's own `embedding.weight`.
        self._embedding = (embedding,)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """hidden (N, H), targets (N,) -> summed negative log-likelihood (0-d)."""
        if self.projection is not None:
            hidden = self.projection(hidden)
        logits = F.linear(hidden, self._embedding[0].weight[:self.classes], self.bias)  # (N, V)
        return F.cross_entropy(logits, targets, reduction="sum")


def _adaptive(hidden_size: int, classes: int) -> nn.AdaptiveLogSoftmaxWithLoss:
    cutoffs = [cutoff for cutoff in ADAPTIVE_CUTOFFS if cutoff < classes - 1] or [
        max(1, classes // 2)]
    return nn.AdaptiveLogSoftmaxWithLoss(hidden_size, classes, cutoffs, div_value=4.0)


def lm_targets(tokens: torch.Tensor, lengths: torch.Tensor, backward: bool, classes: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Which states predict which token. tokens (B, T), lengths (B,) -> (mask (B, T) of the
    states that predict something, targets (B, T)). Forward: the state at t predicts token t+1;
    backward: the state at t (which has read t..end) predicts token t-1. Tokens past `classes`
    become <unk> (index 1)."""
    width = tokens.size(1)
    positions = torch.arange(width, device=tokens.device).unsqueeze(0)  # (1, T)
    lengths = lengths.to(tokens.device).unsqueeze(1)
    if backward:
        mask = (positions >= 1) & (positions < lengths)
        targets = torch.roll(tokens, 1, dims=1)
    else:
        mask = positions < lengths - 1
        targets = torch.roll(tokens, -1, dims=1)
    return mask, targets.masked_fill(targets >= classes, 1)


class LanguageModel(nn.Module):
    """Next-token (and previous-token) prediction over an RNNClassifier's encoder.

    `forward(tokens, lengths)` -> summed negative log-likelihood of every predicted token (0-d);
    `predicted_tokens(lengths)` says how many that was (computed on the host, no sync).
    """

    def __init__(self, encoder: RNNClassifier, output: str = "adaptive", output_vocab: int = 0
                 ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, not {output!r}")
        vocab_size = encoder.embedding.num_embeddings
        self.classes = min(vocab_size, output_vocab) if output_vocab else vocab_size
        self.embedding = encoder.embedding
        self.embedding_dropout = encoder.embedding_dropout
        self.rnn = encoder.rnn
        self.bidirectional = encoder.bidirectional
        # Borrowed, not a submodule: runs one layer and direction with the rnn's own weights.
        self._encoder = (encoder,)
        directions = 2 if self.bidirectional else 1
        hidden = self.rnn.hidden_size
        self.heads = nn.ModuleList(
            TiedSoftmax(self.embedding, hidden, self.classes) if output == "tied"
            else _adaptive(hidden, self.classes) for _ in range(directions))

    def direction_states(self, tokens: torch.Tensor, lengths: torch.Tensor
                         ) -> list[torch.Tensor]:
        """tokens (B, T), lengths (B,) -> the top layer's states (B, T, H) of each direction, in
        text order; the backward one at t has read tokens t..end."""
        encoder = self._encoder[0]
        _, reverse = valid_and_reverse(lengths.to(tokens.device), tokens.size(1))
        embedded = self.embedding_dropout(self.embedding(tokens))  # (B, T, E)
        inputs = [embedded, take_time(embedded, reverse)] if self.bidirectional else [embedded]
        for layer in range(self.rnn.num_layers):
            if layer > 0:
                inputs = [F.dropout(states, self.rnn.dropout, self.training)
                          for states in inputs]
                if self.bidirectional:  # each direction's half of the input; zeros for the other
                    zeros = torch.zeros_like(inputs[0])
                    inputs = [torch.cat([inputs[0], zeros], 2), torch.cat([zeros, inputs[1]], 2)]
            inputs = [encoder._run_direction(states, layer, reverse=direction == 1)
                      for direction, states in enumerate(inputs)]
        if self.bidirectional:
            inputs[1] = take_time(inputs[1], reverse)  # back in text order
        return inputs

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        total = tokens.new_zeros((), dtype=torch.float32)
        for direction, states in enumerate(self.direction_states(tokens, lengths)):
            mask, targets = lm_targets(tokens, lengths, backward=direction == 1,
                                       classes=self.classes)
            hidden, wanted = states[mask], targets[mask]  # (N, H), (N,)
            if len(wanted) == 0:
                continue
            head = self.heads[direction]
            if isinstance(head, nn.AdaptiveLogSoftmaxWithLoss):
                total = total + head(hidden, wanted).loss * len(wanted)  # its loss is a mean
            else:
                total = total + head(hidden, wanted)
        return total

    def predicted_tokens(self, lengths: torch.Tensor) -> int:
        """How many tokens `forward` predicts for texts of `lengths` (B,)."""
        per_direction = int((lengths - 1).clamp(min=0).sum())
        return per_direction * len(self.heads)
