"""RNNClassifier: Embedding -> RNN | LSTM | GRU over packed sequences -> pooling -> Linear.

With `ngram_order` > 0, a bag of hashed word n-grams (rnnclf/models/ngrams.py) is concatenated to the
pooled recurrent states before the output layer.

On CUDA the recurrent layer runs on packed sequences (cuDNN). On the CPU it runs over the padded
batch with the same results (see `_padded_forward`), which is faster there; CPU inference (eval
mode, no autograd, fp32) runs through rnnclf/accel/cpu_inference.py (see `_inference_features`).
"""

from __future__ import annotations

import math

import torch
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnclf.accel.cpu_inference import recurrent_layer, reverse_time, token_gates
from rnnclf.accel.dropout import Dropout, dropout
from rnnclf.accel.fused_gru import fused_gru
from rnnclf.models.ngrams import NgramBag

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLINGS = ("last", "mean", "max", "attention")
# The kernels nn.RNN (tanh) / nn.LSTM / nn.GRU call, here run one layer and direction at a time.
_KERNELS = {nn.RNN: _VF.rnn_tanh, nn.LSTM: _VF.lstm, nn.GRU: _VF.gru}
# On the CPU a batch runs padded, split into runs of similar length that each compute at most
# this many times their real tokens (0: PyTorch's packed path instead, for tests/benchmarks).
MAX_PADDED_WORK = 2.0
# On the CPU a training GRU runs through `fused_gru` (False: ATen's kernel, for benchmarks).
FUSED_GRU = True
# ...for batches of at most this many padded positions (batch x width). fused_gru keeps scratch
# buffers sized to the largest batch it saw (~12 KB per position for a BiGRU-128), so the rare
# batches of very long texts (1-2% of AG News batches) take ATen's kernel instead: the default
# run's peak memory stays well under 1.5 GiB.
FUSED_GRU_MAX_POSITIONS = 12_288
# On the CPU inference runs through rnnclf/accel/cpu_inference.py (False: ATen's kernels).
LEAN_INFERENCE = True


class EnsembleClassifier(nn.Module):
    """Several classifiers of one vocabulary and label set, averaged (`train.ensemble`).

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


class RNNClassifier(nn.Module):
    """Classifies padded token-id batches. Knows nothing of files, configs or the CLI."""

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
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {cell!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_index,
                                      sparse=sparse_embedding)
        self.embedding_dropout = Dropout(embedding_dropout)
        self.rnn = CELLS[cell](
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=rnn_dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.output_dropout = Dropout(dropout)
        directions = 2 if bidirectional else 1
        state_size = hidden_size * directions
        if pooling == "attention":
            # Additive attention with one learned query: score_t = q . tanh(W h_t + b).
            self.attention_projection = nn.Linear(state_size, state_size)
            self.attention_query = nn.Parameter(torch.empty(state_size).normal_(0.0, 0.1))
        # Optional bag of hashed word n-grams beside the recurrent features (rnnclf/models/ngrams.py).
        self.ngram_bag = (NgramBag(vocab_size, ngram_order, ngram_buckets, ngram_dim,
                                   sparse=sparse_embedding, dropout=ngram_dropout)
                          if ngram_order > 0 else None)
        features = state_size + (ngram_dim if self.ngram_bag is not None else 0)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) int64, lengths (B,) int64 (CPU), all lengths >= 1 -> logits (B, C)."""
        features = self._recurrent_features(tokens, lengths)
        if self.ngram_bag is not None:
            features = torch.cat([features, self.ngram_bag(tokens, lengths)], dim=1)
        return self.classifier(self.output_dropout(features))

    def _recurrent_features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The pooled recurrent states, (B, D)."""
        lengths = lengths.cpu()
        if self._lean_inference(tokens):
            return self._inference_features(tokens, lengths)
        # Looked up time-major, the layout the recurrent kernels run in: (B, T, E) is a view.
        embedded = self.embedding_dropout(self.embedding(tokens.t())).transpose(0, 1)
        if not embedded.is_cuda and MAX_PADDED_WORK > 0:
            return self._padded_in_segments(embedded, lengths)
        # Training and eval batches arrive longest first; then packing skips a sort of the
        # (B, T, E) input and the unsort of every output.
        presorted = bool((lengths[:-1] >= lengths[1:]).all())
        packed = pack_padded_sequence(embedded, lengths, batch_first=True,
                                      enforce_sorted=presorted)
        packed_states, final = self.rnn(packed)
        if self.pooling == "last":
            pooled = self._last_states(final)
        elif self.pooling == "max":
            # Padding with -inf lets amax skip it without building a mask.
            states, _ = pad_packed_sequence(packed_states, batch_first=True,
                                            padding_value=float("-inf"))  # (B, T', D)
            pooled = states.amax(dim=1)
        else:
            states, _ = pad_packed_sequence(packed_states, batch_first=True)  # (B, T', D), 0-padded
            pooled = self._pool_states(states, lengths.to(states.device))
        return pooled

    def _padded_in_segments(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`_padded_forward` over rows of similar length, so no run pads past MAX_PADDED_WORK
        times its real tokens; the pooled features (B, D) in the batch's row order.

        Why not PyTorch's packed path for the rare batch with a few long texts: on the CPU its
        backward zero-fills a (tokens x gates*H) gradient per time step, on fresh pages: one
        such batch of a 2-layer BiLSTM-256 took 32 s (540 fills of 29 MB, 60 ms each), and in
        the default's training the 1% of batches that packed took 6-9% of the time. Each row's
        features depend on that row alone, so splitting changes no result.
        """
        segments = padded_segments(lengths, MAX_PADDED_WORK)
        if len(segments) == 1:
            return self._padded_forward(embedded[:, :int(lengths.max())], lengths)
        order = torch.argsort(lengths, descending=True, stable=True)
        ranked = lengths[order]
        pooled = [self._padded_forward(embedded[order[start:end], :int(ranked[start])],
                                       ranked[start:end]) for start, end in segments]
        features = torch.cat(pooled)  # rows longest first
        return features[torch.argsort(order).to(features.device)]

    def _padded_forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The packed model's pooled features, computed over the padded batch (CPU path).

        On the CPU, PyTorch's packed RNN slices one (tokens, gates*H) tensor per time step, and
        the backward of each slice writes a zero tensor of that full size: work grows with
        steps x tokens and was ~40% of a training step. Over padded input the same kernels
        run without that (LSTM even gets oneDNN's fused kernel). Results are identical at the
        valid positions: the forward direction never sees padding before a text ends, and the
        backward direction reads each text reversed in place (padding stays at the end).
        Padded positions are masked out of the pooling, so they get no gradient.
        A GRU that trains in fp32/fp64, or fp32 under CPU autocast to bf16, runs both
        directions of a layer through `fused_gru` (same results, faster; its backward direction
        reads the batch reversed in time with the padding made inert, so it needs no per-text
        reversal). `embedded` is best a (B, T, E) view of time-major values, as
        `_recurrent_features` makes it. Inference in fp32 (or bf16 autocast) goes to
        `_inference_features`.
        """
        batch, width, _ = embedded.shape
        valid, reverse = _valid_and_reverse(lengths, width)
        if embedded.device.type != "cpu":
            valid, reverse = valid.to(embedded.device), reverse.to(embedded.device)
        rnn = self.rnn
        kernel = _KERNELS[type(rnn)]
        directions = ("", "_reverse") if self.bidirectional else ("",)
        autocast = _cpu_autocast_dtype()
        fused = (FUSED_GRU and isinstance(rnn, nn.GRU) and embedded.device.type == "cpu"
                 and torch.is_grad_enabled() and autocast in (None, torch.bfloat16)
                 and (embedded.dtype == torch.float32 if autocast else
                      embedded.dtype in (torch.float32, torch.float64))
                 and batch * width <= FUSED_GRU_MAX_POSITIONS)
        layer_input = embedded  # (B, T, E), later (B, T, D)
        for layer in range(rnn.num_layers):
            if layer > 0 and rnn.dropout > 0:
                layer_input = dropout(layer_input, rnn.dropout, self.training)
            if fused:
                layer_input = self._fused_gru_layer(layer_input, layer, lengths, autocast)
                continue
            outputs = []
            for suffix in directions:
                weights = [getattr(rnn, f"{name}_l{layer}{suffix}")
                           for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                zeros = layer_input.new_zeros(1, batch, rnn.hidden_size)
                hidden = (zeros, zeros) if isinstance(rnn, nn.LSTM) else zeros
                source = _gather_time(layer_input, reverse) if suffix else layer_input
                states = kernel(source, hidden, weights, True, 1, 0.0, self.training, False,
                                True)[0]  # (B, T, H)
                outputs.append(_gather_time(states, reverse) if suffix else states)
            layer_input = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
        states = layer_input  # (B, T, D); rows past a text's length hold junk
        if self.pooling != "last":
            if self.pooling != "max":  # (max pooling masks the junk itself)
                # Zero the junk, as pad_packed_sequence leaves padding: both paths pool alike.
                states = states.masked_fill(~valid.unsqueeze(2), 0.0)
            return self._pool_states(states, lengths.to(states.device))
        # last: forward direction at the last token; backward direction at the first.
        last = (lengths - 1).to(states.device).view(batch, 1, 1).expand(batch, 1, states.size(2))
        final = states.gather(1, last).squeeze(1)  # (B, D)
        if not self.bidirectional:
            return final
        hidden = rnn.hidden_size
        return torch.cat([final[:, :hidden], states[:, 0, hidden:]], dim=1)  # (B, 2H)

    def _fused_gru_layer(self, layer_input: torch.Tensor, layer: int, lengths: torch.Tensor,
                         matmul_dtype: torch.dtype | None) -> torch.Tensor:
        """One GRU layer, all directions in one `fused_gru` pass: (B, T, E) -> (B, T, D), a
        view of time-major outputs (the inputs, too, are best a view of time-major ones);
        matmul_dtype bfloat16 under CPU autocast (gate math and states stay fp32)."""
        suffixes = ("", "_reverse") if self.bidirectional else ("",)
        weights = [[getattr(self.rnn, f"{name}_l{layer}{suffix}")
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                   for suffix in suffixes]
        return fused_gru(layer_input.transpose(0, 1), weights, lengths,
                         matmul_dtype).transpose(0, 1)

    def _lean_inference(self, tokens: torch.Tensor) -> bool:
        """Whether `_inference_features` computes this batch: eval mode, without autograd, in
        fp32 on the CPU, or under CPU autocast to bf16."""
        return (LEAN_INFERENCE and not self.training and not torch.is_grad_enabled()
                and tokens.device.type == "cpu" and tokens.numel() > 0
                and self.embedding.weight.dtype == torch.float32
                and _cpu_autocast_dtype() in (None, torch.bfloat16))

    def _inference_features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`_padded_forward`'s pooled features at CPU inference, through
        rnnclf/accel/cpu_inference.py (faster, same results to float rounding).

        Time-major throughout, rows longest first so that each step computes only the texts
        still running (no work on padding, as packing). The backward direction reads each text
        reversed as token ids, not as embeddings; max, mean and last pooling do not care about
        order, so its states are put back in text order only for attention or a next layer.
        """
        descending = bool((lengths[:-1] >= lengths[1:]).all())
        if not descending:  # eval batches come shortest first: sort the ids, unsort the features
            order = torch.argsort(lengths, descending=True, stable=True)
            features = self._inference_features(tokens[order], lengths[order])
            return features[torch.argsort(order)]
        rnn = self.rnn
        cell = next(name for name, kind in CELLS.items() if isinstance(rnn, kind))
        width = int(lengths[0])
        tokens = tokens[:, :width]  # a batch may be padded past its longest text
        valid, reverse = _valid_and_reverse(lengths, width)
        active = (lengths.unsqueeze(1) > torch.arange(width)).sum(dim=0).tolist()  # per step
        suffixes = ("", "_reverse") if self.bidirectional else ("",)
        # Under CPU autocast (bf16), the recurrent matmuls take bf16 operands as autocast's
        # would; the first layer's per-token gate tables and all gate math stay fp32.
        matmul_dtype = _cpu_autocast_dtype() or torch.float32
        layer_input = tokens  # (B, T) ids, later (T, B, D)
        for layer in range(rnn.num_layers):
            weights = [[getattr(rnn, f"{name}_l{layer}{suffix}")
                        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                       for suffix in suffixes]
            if layer == 0:
                # Per direction, the input gates of each distinct token, then rows into them.
                tables, rows = token_gates(tokens, self.embedding.weight,
                                           [w[0] for w in weights], [w[2] for w in weights])
                sources = [rows, rows.gather(1, reverse)][:len(suffixes)]
                sources = [source.t().contiguous() for source in sources]  # (T, B)
                weights = [[table, w[1], None, w[3]]
                           for table, w in zip(tables, weights, strict=True)]
            else:
                sources = [layer_input, reverse_time(layer_input, reverse)][:len(suffixes)]
            top = layer + 1 == rnn.num_layers and self.pooling != "attention"
            pooling = {"mean": "sum"}.get(self.pooling, self.pooling) if top else "none"
            states = [recurrent_layer(cell, source, active, pooling, *w,
                                      matmul_dtype=matmul_dtype)
                      for source, w in zip(sources, weights, strict=True)]
            if top:  # (B, H) each
                pooled = torch.cat(states, dim=1)  # (B, D)
                if self.pooling == "mean":
                    pooled /= lengths.unsqueeze(1).to(pooled.dtype)
                return pooled
            # (T, B, H) each, the backward direction's in reversed text order.
            layer_input = torch.cat([states[0]] + [reverse_time(s, reverse)
                                                   for s in states[1:]], dim=2)  # (T, B, D)
        batch_major = layer_input.transpose(0, 1).masked_fill(~valid.unsqueeze(2), 0.0)
        return self._pool_states(batch_major, lengths)  # attention

    def _last_states(self, final: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Top layer's final state: forward at each text's last token, backward at its first."""
        hidden = final[0] if isinstance(final, tuple) else final  # LSTM returns (h, c)
        if self.bidirectional:
            return torch.cat([hidden[-2], hidden[-1]], dim=1)  # (B, 2H)
        return hidden[-1]  # (B, H)

    def _pool_states(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(states.size(1), device=states.device)
        valid = (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)  # (B, T', 1)
        if self.pooling == "mean":
            return states.sum(dim=1) / lengths.unsqueeze(1).to(states.dtype)
        if self.pooling == "attention":
            keys = torch.tanh(self.attention_projection(states))  # (B, T', D)
            scores = keys @ self.attention_query  # (B, T')
            # Padded steps get -inf, so weight exactly 0: extra padding never changes the result.
            scores = scores.masked_fill(~valid.squeeze(2), float("-inf"))
            weights = scores.softmax(dim=1).unsqueeze(2)  # (B, T', 1)
            return (weights * states).sum(dim=1)  # (B, D)
        return states.masked_fill(~valid, float("-inf")).amax(dim=1)


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


def _valid_and_reverse(lengths: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """lengths (B,) -> valid positions (B, T) bool, and the index (B, T) that reverses each text
    within its length and leaves padding in place."""
    positions = torch.arange(width)
    valid = positions.unsqueeze(0) < lengths.unsqueeze(1)
    return valid, torch.where(valid, lengths.unsqueeze(1) - 1 - positions, positions)


def _gather_time(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, T, D), index (B, T) -> values[b, index[b, t], :]."""
    return values.gather(1, index.unsqueeze(2).expand(-1, -1, values.size(2)))


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
