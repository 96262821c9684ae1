"""The CPU backend: the speed paths `RNNClassifier` asks first, chosen once when it is built.

Same numbers as the model's reference path (rnnclf/models/classifier.py), computed faster on the
CPU; tests compare the two. The backend is a plain attribute of the model (no state): it never
shows in the state dict or the checkpoint.

- Training and evaluation with autograd run over the padded batch (`_padded_forward`), one
  layer and direction at a time through ATen's own kernels (`torch._VF`), split into runs of
  similar length (`padded_segments`); a GRU trains through `fused_gru`.
- Inference (eval mode, no autograd, fp32 or bf16 autocast) runs through
  rnnclf/accel/cpu_inference.py (`_inference_features`).
- Dropout draws cheap masks (rnnclf/accel/dropout.py).

Why not PyTorch's packed path on the CPU: it slices one (tokens, gates*H) tensor per time step,
and the backward of each slice writes a zero tensor of that full size, so work grows with
steps x tokens, a large share of a training step (docs/benchmarks.md). Over padded input the
same kernels run without that (LSTM even gets oneDNN's fused kernel). Results are identical at
the valid positions: the forward direction never sees padding before a text ends, the backward
direction reads each text reversed in place, and padded positions are masked out of the
pooling, so they get no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import _VF, nn

from rnnclf.accel import kernels
from rnnclf.accel.cpu_inference import recurrent_layer, reverse_time, token_gates
from rnnclf.accel.dropout import dropout
from rnnclf.accel.fused_gru import fused_gru
from rnnclf.models.classifier import CELLS, RNNClassifier, layer_weights
from rnnclf.models.pooling import take_time, valid_and_reverse

# The kernels nn.RNN (tanh) / nn.LSTM / nn.GRU call, here run one layer and direction at a time.
_KERNELS = {nn.RNN: _VF.rnn_tanh, nn.LSTM: _VF.lstm, nn.GRU: _VF.gru}


@dataclass(frozen=True)
class CpuBackend:
    """How `RNNClassifier` computes CPU batches; the defaults are rnnclf's."""

    # A batch runs padded, split into runs of similar length that each compute at most this
    # many times their real tokens.
    max_padded_work: float = 2.0
    # A training GRU (fp32/fp64, or fp32 under bf16 autocast) runs through `fused_gru`
    # (False: ATen's kernel, for benchmarks)...
    fused_gru: bool = True
    # ...for batches of at most this many padded positions (batch x width). fused_gru keeps
    # scratch buffers sized to the largest batch it saw (a few directions x 3H fp32 rows per
    # position), so this bounds that memory; the rare batches of very long texts take ATen's
    # kernel instead, which keeps the default run inside its peak-memory target
    # (docs/benchmarks.md).
    fused_gru_max_positions: int = 12_288
    # Inference runs through rnnclf/accel/cpu_inference.py (False: the padded path).
    lean_inference: bool = True

    def __post_init__(self) -> None:
        if self.max_padded_work < 1.0:
            raise ValueError(f"max_padded_work must be >= 1 (a text's own tokens), not "
                             f"{self.max_padded_work}")

    def describe(self) -> str:
        """One line for the run log, e.g. "cpu: fused GRU, C kernels, padded segments"."""
        parts = ["fused GRU"] if self.fused_gru else []
        if self.lean_inference:
            parts.append("lean inference")
        if kernels.usable(torch.zeros(1)):
            parts.append("C kernels")
        parts.append(f"padded segments (at most {self.max_padded_work:g}x the tokens)")
        return "cpu: " + ", ".join(parts)

    def handles(self, model: RNNClassifier, tokens: torch.Tensor) -> bool:
        return tokens.device.type == "cpu"

    def dropout(self, inputs: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        return dropout(inputs, p, training)

    def recurrent_features(self, model: RNNClassifier, tokens: torch.Tensor,
                           lengths: torch.Tensor) -> torch.Tensor:
        """The pooled recurrent states (B, D), as `RNNClassifier.recurrent_features`."""
        lengths = lengths.cpu()
        if self._lean_inference(model, tokens):
            return _inference_features(model, tokens, lengths)
        # Looked up time-major, the layout the recurrent kernels run in: (B, T, E) is a view.
        embedded = dropout(model.embedding(tokens.t()), model.embedding_dropout.p,
                           model.training).transpose(0, 1)
        return self._padded_in_segments(model, embedded, lengths)

    def _lean_inference(self, model: RNNClassifier, tokens: torch.Tensor) -> bool:
        """Whether `_inference_features` computes this batch: eval mode, without autograd, in
        fp32, or under CPU autocast to bf16."""
        return (self.lean_inference and not model.training and not torch.is_grad_enabled()
                and tokens.numel() > 0 and model.embedding.weight.dtype == torch.float32
                and _cpu_autocast_dtype() in (None, torch.bfloat16))

    def _padded_in_segments(self, model: RNNClassifier, embedded: torch.Tensor,
                            lengths: torch.Tensor) -> torch.Tensor:
        """`_padded_forward` over rows of similar length, so no run pads past max_padded_work
        times its real tokens; the pooled features (B, D) in the batch's row order.

        Why not PyTorch's packed path for the rare batch with a few long texts: on the CPU its
        backward zero-fills a (tokens x gates*H) gradient per time step, on fresh pages, so one
        such batch can cost more than many ordinary ones (docs/benchmarks.md). Each row's
        features depend on that row alone, so splitting changes no result.
        """
        segments = padded_segments(lengths, self.max_padded_work)
        if len(segments) == 1:
            return self._padded_forward(model, embedded[:, :int(lengths.max())], lengths)
        order = torch.argsort(lengths, descending=True, stable=True)
        ranked = lengths[order]
        pooled = [self._padded_forward(model, embedded[order[start:end], :int(ranked[start])],
                                       ranked[start:end]) for start, end in segments]
        features = torch.cat(pooled)  # rows longest first
        return features[torch.argsort(order)]

    def _padded_forward(self, model: RNNClassifier, embedded: torch.Tensor,
                        lengths: torch.Tensor) -> torch.Tensor:
        """The reference path's pooled features (B, D), computed over the padded batch
        `embedded` (B, T, E), best a view of time-major values as `recurrent_features` makes.

        A GRU that trains runs both directions of a layer through `fused_gru` (its backward
        direction reads the batch reversed in time with the padding made inert, so it needs no
        per-text reversal); other cells run ATen's kernel per direction (`_aten_layer`).
        """
        valid, reverse = valid_and_reverse(lengths, embedded.size(1))  # (B, T) each
        rnn = model.rnn
        autocast = _cpu_autocast_dtype()
        fused = self._fused_gru_takes(rnn, embedded, autocast)
        layer_input = embedded  # (B, T, E), later (B, T, D)
        for layer in range(rnn.num_layers):
            if layer > 0 and rnn.dropout > 0:
                layer_input = dropout(layer_input, rnn.dropout, model.training)
            if fused:
                # Both directions in one pass, time-major in and out; under CPU autocast the
                # matmuls take bf16 operands (gate math and states stay fp32).
                weights = [layer_weights(rnn, layer, backward)
                           for backward in _directions(model)]
                layer_input = fused_gru(layer_input.transpose(0, 1), weights, lengths,
                                        autocast).transpose(0, 1)
            else:
                layer_input = _aten_layer(model, layer_input, layer, reverse)
        return model.pool(layer_input, valid, lengths)  # rows past a text's end hold junk

    def _fused_gru_takes(self, rnn: nn.RNNBase, embedded: torch.Tensor,
                         autocast: torch.dtype | None) -> bool:
        """Whether `fused_gru` runs this batch: a training GRU in fp32/fp64, or fp32 under CPU
        autocast to bf16, of at most fused_gru_max_positions padded positions."""
        batch, width, _ = embedded.shape
        return (self.fused_gru and isinstance(rnn, nn.GRU) and torch.is_grad_enabled()
                and autocast in (None, torch.bfloat16)
                and (embedded.dtype == torch.float32 if autocast else
                     embedded.dtype in (torch.float32, torch.float64))
                and batch * width <= self.fused_gru_max_positions)


def select_backend(device: torch.device | str, **options: float | bool | int
                   ) -> CpuBackend | None:
    """The backend for models on `device`: `CpuBackend(**options)` on the CPU; None (the
    model's reference path, cuDNN's kernels) elsewhere."""
    return CpuBackend(**options) if torch.device(device).type == "cpu" else None


def describe_backend(backend: CpuBackend | None, device: torch.device | str) -> str:
    """The run log's line for `backend` (None: the reference path)."""
    if backend is not None:
        return backend.describe()
    return f"{torch.device(device).type}: reference path (the model's own masked forward)"


def _directions(model: RNNClassifier) -> tuple[bool, ...]:
    """Per direction whether it is the backward one."""
    return (False, True) if model.bidirectional else (False,)


def _aten_layer(model: RNNClassifier, layer_input: torch.Tensor, layer: int,
                reverse: torch.Tensor) -> torch.Tensor:
    """One layer, each direction through ATen's kernel: (B, T, I) -> (B, T, D). The backward
    direction reads each text reversed within its length (`reverse` (B, T))."""
    rnn = model.rnn
    kernel = _KERNELS[type(rnn)]
    outputs = []
    for backward in _directions(model):
        zeros = layer_input.new_zeros(1, layer_input.size(0), rnn.hidden_size)
        hidden = (zeros, zeros) if isinstance(rnn, nn.LSTM) else zeros
        source = take_time(layer_input, reverse) if backward else layer_input
        states = kernel(source, hidden, layer_weights(rnn, layer, backward), True, 1, 0.0,
                        model.training, False, True)[0]  # (B, T, H)
        outputs.append(take_time(states, reverse) if backward else states)
    return torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]


def _inference_features(model: RNNClassifier, tokens: torch.Tensor, lengths: torch.Tensor
                        ) -> torch.Tensor:
    """The reference path's pooled features at CPU inference, through
    rnnclf/accel/cpu_inference.py (faster, same results to float rounding).

    Time-major throughout, rows longest first so that each step computes only the texts
    still running (no work on padding, as packing). The backward direction reads each text
    reversed as token ids, not as embeddings; max, mean and last pooling do not care about
    order, so its states are put back in text order only for attention or a next layer.
    """
    descending = bool((lengths[:-1] >= lengths[1:]).all())
    if not descending:  # eval batches come shortest first: sort the ids, unsort the features
        order = torch.argsort(lengths, descending=True, stable=True)
        features = _inference_features(model, tokens[order], lengths[order])
        return features[torch.argsort(order)]
    rnn = model.rnn
    cell = next(name for name, kind in CELLS.items() if isinstance(rnn, kind))
    width = int(lengths[0])
    tokens = tokens[:, :width]  # a batch may be padded past its longest text
    valid, reverse = valid_and_reverse(lengths, width)
    active = (lengths.unsqueeze(1) > torch.arange(width)).sum(dim=0).tolist()  # per step
    directions = _directions(model)
    # Under CPU autocast (bf16), the recurrent matmuls take bf16 operands as autocast's
    # would; the first layer's per-token gate tables and all gate math stay fp32.
    matmul_dtype = _cpu_autocast_dtype() or torch.float32
    layer_input = tokens  # (B, T) ids, later (T, B, D)
    for layer in range(rnn.num_layers):
        weights = [layer_weights(rnn, layer, backward) for backward in directions]
        if layer == 0:
            # Per direction, the input gates of each distinct token, then rows into them.
            tables, rows = token_gates(tokens, model.embedding.weight,
                                       [w[0] for w in weights], [w[2] for w in weights])
            sources = [rows, rows.gather(1, reverse)][:len(directions)]
            sources = [source.t().contiguous() for source in sources]  # (T, B)
            weights = [[table, w[1], None, w[3]]
                       for table, w in zip(tables, weights, strict=True)]
        else:
            sources = [layer_input, reverse_time(layer_input, reverse)][:len(directions)]
        top = layer + 1 == rnn.num_layers and model.pooling != "attention"
        pooling = {"mean": "sum"}.get(model.pooling, model.pooling) if top else "none"
        states = [recurrent_layer(cell, source, active, pooling, *w, matmul_dtype=matmul_dtype)
                  for source, w in zip(sources, weights, strict=True)]
        if top:  # (B, H) each
            pooled = torch.cat(states, dim=1)  # (B, D)
            if model.pooling == "mean":
                pooled /= lengths.unsqueeze(1).to(pooled.dtype)
            return pooled
        # (T, B, H) each, the backward direction's in reversed text order.
        layer_input = torch.cat([states[0]] + [reverse_time(s, reverse)
                                               for s in states[1:]], dim=2)  # (T, B, D)
    return model.pool(layer_input.transpose(0, 1), valid, lengths)  # attention


def _cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype CPU autocast casts matmuls to, or None when it is off."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None


def padded_segments(lengths: torch.Tensor, max_work: float) -> list[tuple[int, int]]:
    """Row ranges [start, end) of the rows sorted longest first, each padded to its own longest
    text costing at most `max_work` times its real tokens (a lone row always fits)."""
    ranked = sorted(lengths.tolist(), reverse=True)
    segments, start = [], 0
    while start < len(ranked):
        width, tokens, end = ranked[start], ranked[start], start + 1
        while end < len(ranked) and width * (end + 1 - start) <= max_work * (tokens + ranked[end]):
            tokens += ranked[end]
            end += 1
        segments.append((start, end))
        start = end
    return segments
