"""A bag of hashed word n-grams: fastText's text representation, as one branch of the classifier.

The recurrent branch reads word order; this branch adds what a linear bag-of-n-grams model sees
(Joulin et al. 2016, "Bag of Tricks for Efficient Text Classification"): the mean of one learned
vector per word n-gram (orders 1..N), each n-gram hashed into a fixed number of rows. The hashing
is done on the token ids inside `forward` with integer tensor ops, so there is no n-gram
vocabulary to build, save or ship: the checkpoint holds only the table.
"""

from __future__ import annotations

import torch
from torch import nn


def ngram_buckets_of(
    tokens: torch.Tensor, lengths: torch.Tensor, order: int, buckets: int, vocab_size: int
) -> torch.Tensor:
    """tokens (B, T) int64 ids, lengths (B,) -> (B, order*T) rows in 1..buckets, 0 = no n-gram.

    An n-gram of order n starts at every position t with t + n <= length; its code is the ids
    read as digits in base `vocab_size`, folded modulo a prime, then spread over the buckets.
    The order is mixed in, so a bigram and a unigram with equal codes land on different rows.
    """
    # Codes are folded modulo a prime after each word, so any order stays inside int64; an odd
    # multiplier then spreads them over the buckets (code < 2^31, so code * spread < 2^63).
    # (Local constants: TorchScript, used by `rnnclf export`, cannot read module globals.)
    fold_prime = 2_147_483_647
    spread = 1_000_003
    width = tokens.size(1)
    positions = torch.arange(width, device=tokens.device)
    lengths = lengths.to(tokens.device)
    rows = []
    code = torch.zeros_like(tokens)
    for n in range(1, order + 1):
        # code[:, t] holds the n-gram starting at t; the last n-1 columns have no full n-gram.
        shifted = torch.zeros_like(tokens)
        shifted[:, : width - n + 1] = tokens[:, n - 1:]
        code = (code * vocab_size + shifted) % fold_prime
        valid = positions.unsqueeze(0) + n <= lengths.unsqueeze(1)  # (B, T)
        row = (code * spread + n) % buckets + 1
        rows.append(torch.where(valid, row, torch.zeros_like(row)))
    return torch.cat(rows, dim=1)


class NgramBag(nn.Module):
    """(tokens, lengths) -> the mean of the text's hashed n-gram vectors, (B, dim)."""

    def __init__(self, vocab_size: int, order: int, buckets: int, dim: int,
                 sparse: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if order < 1 or buckets < 1 or dim < 1:
            raise ValueError("n-gram order, buckets and dim must be >= 1")
        self.vocab_size = vocab_size
        self.order = order
        self.buckets = buckets
        self.dropout = dropout
        # Row 0 stands for "no n-gram here" (padding, or past the end for longer orders).
        self.table = nn.Embedding(buckets + 1, dim, padding_idx=0, sparse=sparse)
        # fastText's initialisation: small uniform vectors, so a mean of many starts near zero.
        with torch.no_grad():
            self.table.weight.uniform_(-1.0 / dim, 1.0 / dim)
            self.table.weight[0].zero_()

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows = ngram_buckets_of(tokens, lengths, self.order, self.buckets, self.vocab_size)
        if self.training and self.dropout > 0:
            # Word dropout for bags (Iyyer et al. 2015): leave out random n-grams of each text,
            # so no single n-gram can carry the prediction. The mean is over those left.
            kept = torch.rand(rows.shape, device=rows.device) >= self.dropout
            rows = torch.where(kept, rows, torch.zeros_like(rows))
        counts = (rows > 0).sum(dim=1, keepdim=True).clamp_min(1)  # (B, 1)
        # Nested: TorchScript skips a block only under a bare `if not torch.jit.is_scripting()`.
        if not torch.jit.is_scripting():  # noqa: SIM102
            if not torch.is_grad_enabled() and not torch.onnx.is_in_onnx_export():
                # Inference sums the rows without writing (B, order*T, dim) first, much
                # faster on the CPU. Row 0 is zero, as below, so no padding_idx=0, which made
                # embedding_bag slow again (docs/benchmarks.md). Exports keep the plain lookup.
                total = nn.functional.embedding_bag(rows, self.table.weight, mode="sum")
                return total / counts.to(total.dtype)
        vectors = self.table(rows)  # (B, order*T, dim); row 0 is all zeros
        return vectors.sum(dim=1) / counts.to(vectors.dtype)


def ngram_table_rows(requested: int, order: int, lengths: torch.Tensor, max_length: int) -> int:
    """Hash rows worth allocating: `requested`, or fewer when the training texts (lengths (N,))
    hold fewer n-gram positions than that, since a small dataset cannot fill a big table and
    every row costs memory, optimizer state and checkpoint space (~0.8 KB at dim 64)."""
    kept = lengths.clamp(max=max_length)
    positions = sum(int((kept - n + 1).clamp(min=0).sum()) for n in range(1, order + 1))
    return max(1, min(requested, positions))
