"""RNNClassifier: Embedding -> RNN | LSTM | GRU over the padded batch -> pooling -> Linear.

With `ngram_order` > 0, a bag of hashed word n-grams (rnnclf/models/ngrams.py) is concatenated
to the pooled recurrent states before the output layer.

`forward` is the reference path: plain PyTorch over the padded batch, with masks, that runs on
CUDA and exports to ONNX and TorchScript. Each layer runs one direction at a time with the
model's own nn.RNN/LSTM/GRU parameters; the backward direction reads each text reversed within
its length (padding stays at the end), so no state ever sees padding before a text ends.
Faster paths (rnnclf/accel/) come in as a `backend` chosen when the model is built; the model
asks it first and computes the same numbers itself when there is none.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from rnnclf.models.ngrams import NgramBag
from rnnclf.models.pooling import POOLINGS, last_states, pool_states, take_time, valid_and_reverse

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# One layer and direction's parameters, as nn.RNNBase names them: `{name}_l{layer}{suffix}`.
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

__all__ = ["CELLS", "POOLINGS", "WEIGHT_NAMES", "Backend", "RNNClassifier", "count_parameters",
           "layer_weights"]


class Backend(Protocol):
    """A faster way to compute the model's numbers on some batches (rnnclf/accel/backend.py)."""

    def handles(self, model: RNNClassifier, tokens: torch.Tensor) -> bool:
        """Whether this backend computes the batch `tokens` (B, T)."""
        ...

    def recurrent_features(self, model: RNNClassifier, tokens: torch.Tensor,
                           lengths: torch.Tensor) -> torch.Tensor:
        """The pooled recurrent states (B, D), as `RNNClassifier.recurrent_features`."""
        ...

    def dropout(self, inputs: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        """`F.dropout(inputs, p, training)` in distribution."""
        ...

    def describe(self) -> str:
        """One line for the run log, e.g. "cpu: fused GRU, C kernels, padded segments"."""
        ...


def layer_weights(rnn: nn.RNNBase, layer: int, reverse: bool = False) -> list[torch.Tensor]:
    """weight_ih, weight_hh, bias_ih, bias_hh of one layer and direction of `rnn`."""
    suffix = "_reverse" if reverse else ""
    return [getattr(rnn, f"{name}_l{layer}{suffix}") for name in WEIGHT_NAMES]


class RNNClassifier(nn.Module):
    """Classifies padded token-id batches. Knows nothing of files, configs or the CLI.

    `backend` (optional) computes some batches faster with the same numbers; it is a plain
    attribute, not a submodule: the state dict is the same with or without one.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 128,
        cell: str = "gru",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        pooling: str = "max",
        embedding_dropout: float = 0.0,
        rnn_dropout: float = 0.0,
        dropout: float = 0.3,
        padding_index: int = 0,
        sparse_embedding: bool = False,
        ngram_order: int = 0,
        ngram_buckets: int = 1 << 18,
        ngram_dim: int = 64,
        ngram_dropout: float = 0.0,
        backend: Backend | None = None,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {cell!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.backend = backend
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_index,
                                      sparse=sparse_embedding)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.rnn = CELLS[cell](embedding_dim, hidden_size, num_layers=num_layers,
                               bidirectional=bidirectional, batch_first=True,
                               dropout=rnn_dropout if num_layers > 1 else 0.0)
        self.output_dropout = nn.Dropout(dropout)
        state_size = hidden_size * (2 if bidirectional else 1)
        self.attention_projection: nn.Linear | None = None
        self.attention_query: nn.Parameter | None = None
        if pooling == "attention":
            # Additive attention with one learned query: score_t = q . tanh(W h_t + b).
            self.attention_projection = nn.Linear(state_size, state_size)
            self.attention_query = nn.Parameter(torch.empty(state_size).normal_(0.0, 0.1))
        # Optional bag of hashed word n-grams beside the recurrent features (models/ngrams.py).
        self.ngram_bag = (NgramBag(vocab_size, ngram_order, ngram_buckets, ngram_dim,
                                   sparse=sparse_embedding, dropout=ngram_dropout)
                          if ngram_order > 0 else None)
        features = state_size + (ngram_dim if self.ngram_bag is not None else 0)
        self.classifier = nn.Linear(features, num_classes)
        # One-layer, one-direction views of the rnn, holding its own Parameters; a plain dict,
        # so they are no submodules and stay out of the state dict (`_direction`).
        self._directions: dict[tuple[int, bool], nn.RNNBase] = {}

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) int64, lengths (B,) int64, all lengths >= 1 -> logits (B, C)."""
        backend = self.backend
        if backend is not None and backend.handles(self, tokens):
            features = backend.recurrent_features(self, tokens, lengths)
        else:
            backend = None
            features = self.recurrent_features(tokens, lengths)
        if self.ngram_bag is not None:
            features = torch.cat([features, self.ngram_bag(tokens, lengths)], dim=1)
        if backend is None:
            features = self.output_dropout(features)
        else:
            features = backend.dropout(features, self.output_dropout.p, self.training)
        return self.classifier(features)

    def recurrent_features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The pooled recurrent states (B, D) of the reference path."""
        lengths = lengths.to(tokens.device)
        valid, reverse = valid_and_reverse(lengths, tokens.size(1))  # (B, T) each
        states = self.embedding_dropout(self.embedding(tokens))  # (B, T, E)
        for layer in range(self.rnn.num_layers):
            if layer > 0 and self.rnn.dropout > 0:
                states = nn.functional.dropout(states, self.rnn.dropout, self.training)
            outputs = [self._run_direction(states, layer, reverse=False)]  # (B, T, H)
            if self.bidirectional:
                backward = self._run_direction(take_time(states, reverse), layer, reverse=True)
                outputs.append(take_time(backward, reverse))  # back in text order
            states = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]  # (B, T, D)
        return self.pool(states, valid, lengths)

    def _run_direction(self, inputs: torch.Tensor, layer: int, reverse: bool) -> torch.Tensor:
        """One direction of one layer from a zero state: inputs (B, T, I) -> states (B, T, H).
        States past a text's end hold junk; pooling masks them."""
        # Sized from the input, so the batch dimension stays dynamic in exports.
        zeros = inputs.new_zeros(1, inputs.size(0), self.rnn.hidden_size)
        hidden = (zeros, zeros) if isinstance(self.rnn, nn.LSTM) else zeros
        return self._direction(layer, reverse)(inputs, hidden)[0]

    def _direction(self, layer: int, reverse: bool) -> nn.RNNBase:
        """A one-layer, one-direction module whose Parameters are the rnn's own for `layer`
        (and `reverse`): gradients reach the rnn, and exports trace it as nn.RNN/LSTM/GRU.
        Made again when the rnn's Parameters were replaced (load_state_dict(assign=True))."""
        weights = layer_weights(self.rnn, layer, reverse)
        module = self._directions.get((layer, reverse))
        if module is None or any(getattr(module, f"{name}_l0") is not weight
                                 for name, weight in zip(WEIGHT_NAMES, weights, strict=True)):
            module = _one_direction(self.rnn, layer, weights)
            self._directions[(layer, reverse)] = module
        return module

    def pool(self, states: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor
             ) -> torch.Tensor:
        """states (B, T, D) with junk past each text's end, valid (B, T), lengths (B,), all on
        the states' device -> pooled (B, D)."""
        if self.pooling == "last":
            return last_states(states, lengths, self.rnn.hidden_size, self.bidirectional)
        if self.pooling != "max":  # (max pooling masks the junk itself)
            states = states.masked_fill(~valid.unsqueeze(2), 0.0)
        return pool_states(states, lengths, self.pooling, self.attention_projection,
                           self.attention_query)


def _one_direction(rnn: nn.RNNBase, layer: int, weights: list[torch.Tensor]) -> nn.RNNBase:
    """A one-layer, one-direction module shaped like `rnn`'s `layer`, holding `weights` (that
    layer's and direction's Parameters) in place of its own."""
    input_size = rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional
                                                                       else 1)
    options = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
    # Made on the meta device: its own initial weights are never allocated, only replaced.
    module = type(rnn)(input_size, rnn.hidden_size, batch_first=True, device="meta", **options)
    for name, weight in zip(WEIGHT_NAMES, weights, strict=True):
        setattr(module, f"{name}_l0", weight)
    return module


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
