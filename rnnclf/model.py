"""RNNClassifier: Embedding -> RNN | LSTM | GRU over packed sequences -> pooling -> Linear."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLINGS = ("last", "mean", "max", "attention")


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
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {cell!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_index)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.rnn = CELLS[cell](
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=rnn_dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.output_dropout = nn.Dropout(dropout)
        directions = 2 if bidirectional else 1
        state_size = hidden_size * directions
        if pooling == "attention":
            # Additive attention with one learned query: score_t = q . tanh(W h_t + b).
            self.attention_projection = nn.Linear(state_size, state_size)
            self.attention_query = nn.Parameter(torch.empty(state_size).normal_(0.0, 0.1))
        self.classifier = nn.Linear(state_size, num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) int64, lengths (B,) int64 (CPU), all lengths >= 1 -> logits (B, C)."""
        embedded = self.embedding_dropout(self.embedding(tokens))  # (B, T, E)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        packed_states, final = self.rnn(packed)
        if self.pooling == "last":
            pooled = self._last_states(final)
        else:
            states, _ = pad_packed_sequence(packed_states, batch_first=True)  # (B, T', D), 0-padded
            pooled = self._pool_states(states, lengths.to(states.device))
        return self.classifier(self.output_dropout(pooled))

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


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
