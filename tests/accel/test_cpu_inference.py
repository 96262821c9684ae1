"""CPU inference (rnnclf/accel/cpu_inference.py) computes what the padded path and the model's
reference path compute."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import rnnclf.accel.backend
from rnnclf.accel import cpu_inference
from rnnclf.accel.backend import CpuBackend
from rnnclf.data.dataset import EncodedSplit
from rnnclf.inference.scoring import predict_split
from rnnclf.models.classifier import CELLS, POOLINGS, RNNClassifier

VOCAB, EMBEDDING, HIDDEN = 40, 8, 6
LEAN = CpuBackend()  # inference through rnnclf/accel/cpu_inference.py
PADDED = CpuBackend(lean_inference=False)  # the padded training path, run without grad


@pytest.fixture(autouse=True)
def _both_gate_maths(gate_math: object) -> None:
    """Every test here runs with the C gate kernels and with ATen ops (conftest.gate_math)."""


def padded_batch(seed: int = 0, extra_width: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """8 texts of varied lengths (1 to 9 tokens), unsorted, zero-padded past the longest."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 9, 1, 3, 9, 6, 2, 4])
    tokens = torch.randint(1, VOCAB, (len(lengths), 9 + extra_width), generator=generator)
    tokens[torch.arange(tokens.size(1)) >= lengths.unsqueeze(1)] = 0
    return tokens, lengths


def logits(model: RNNClassifier, tokens: torch.Tensor, lengths: torch.Tensor,
           backend: CpuBackend | None) -> torch.Tensor:
    """The model's inference logits through `backend` (None: its reference path)."""
    model.backend = backend
    with torch.inference_mode():
        return model(tokens, lengths)


@pytest.mark.parametrize(("cell", "bidirectional", "layers", "pooling"),
                         list(itertools.product(CELLS, [False, True], [1, 2], POOLINGS)))
def test_inference_matches_the_padded_and_reference_paths(cell: str, bidirectional: bool,
                                                          layers: int, pooling: str) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(VOCAB, 3, EMBEDDING, cell, HIDDEN, num_layers=layers,
                          bidirectional=bidirectional, pooling=pooling, ngram_order=2,
                          ngram_buckets=31, ngram_dim=4).eval()
    tokens, lengths = padded_batch()
    lean = logits(model, tokens, lengths, LEAN)
    assert lean.shape == (len(lengths), 3)
    padded = logits(model, tokens, lengths, PADDED)
    reference = logits(model, tokens, lengths, None)
    torch.testing.assert_close(lean, padded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lean, reference, atol=1e-5, rtol=1e-5)
    # Row order and extra padding change nothing: each row is computed on its own.
    order = torch.tensor([4, 1, 5, 0, 7, 3, 6, 2])  # longest first, as the path sorts them
    torch.testing.assert_close(logits(model, tokens[order, :9], lengths[order], LEAN),
                               lean[order], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("cell", list(CELLS))
def test_inference_of_a_trained_model_matches_its_training_forward(cell: str) -> None:
    """A few training steps (dropout, fused GRU), then inference == the eval forward with grad."""
    torch.manual_seed(0)
    model = RNNClassifier(VOCAB, 3, EMBEDDING, cell, HIDDEN, num_layers=2, embedding_dropout=0.2,
                          rnn_dropout=0.2, ngram_order=2, ngram_buckets=31, ngram_dim=4,
                          ngram_dropout=0.3, backend=LEAN)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for seed in range(3):
        tokens, lengths = padded_batch(seed)
        optimizer.zero_grad()
        F.cross_entropy(model(tokens, lengths), labels).backward()
        optimizer.step()
    model.eval()
    tokens, lengths = padded_batch(seed=7)
    training_forward = model(tokens, lengths).detach()  # grad enabled: the training path
    inference = logits(model, tokens, lengths, LEAN)
    torch.testing.assert_close(inference, training_forward, atol=1e-5, rtol=1e-5)


def test_inference_path_runs_only_without_grad_in_eval_mode(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = RNNClassifier(VOCAB, 3, EMBEDDING, "gru", HIDDEN, backend=LEAN)
    calls = []
    original = rnnclf.accel.backend._inference_features

    def counted(*args: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(rnnclf.accel.backend, "_inference_features", counted)
    tokens, lengths = padded_batch()
    model(tokens, lengths)  # training mode
    model.eval()
    model(tokens, lengths)  # grad enabled
    assert not calls
    with torch.no_grad():
        model(tokens, lengths)
    assert calls


def test_predict_split_is_unchanged() -> None:
    """Through predict_split: length-sorted batches, rows put back in split order."""
    torch.manual_seed(0)
    model = RNNClassifier(VOCAB, 3, EMBEDDING, "gru", HIDDEN, ngram_order=2, ngram_buckets=31,
                          ngram_dim=4)
    generator = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 15, (37,), generator=generator)
    flat = torch.randint(1, VOCAB, (int(lengths.sum()),), generator=generator, dtype=torch.int32)
    offsets = torch.cumsum(lengths, 0) - lengths
    split = EncodedSplit(flat, offsets, lengths, torch.zeros(37, dtype=torch.int64))
    model.backend = PADDED
    reference, _ = predict_split(model, split, 8, 12, torch.device("cpu"))
    model.backend = LEAN
    lean, _ = predict_split(model, split, 8, 12, torch.device("cpu"))
    torch.testing.assert_close(lean, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("cell", "pooling"), list(itertools.product(CELLS, POOLINGS)))
def test_bf16_autocast_keeps_the_inference_path_with_bf16_matmuls(
        cell: str, pooling: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CPU autocast to bf16 the lean path still runs; its per-step recurrent matmuls take
    bf16 operands (the gate math stays fp32), and the logits stay within bf16 rounding of fp32."""
    torch.manual_seed(0)
    model = RNNClassifier(VOCAB, 3, EMBEDDING, cell, HIDDEN, num_layers=2, bidirectional=True,
                          pooling=pooling, ngram_order=2, ngram_buckets=31, ngram_dim=4).eval()
    tokens, lengths = padded_batch()
    reference = logits(model, tokens, lengths, LEAN)
    operand_dtypes: list[torch.dtype] = []
    original = cpu_inference._linear

    def recorded(inputs: torch.Tensor, *args: torch.Tensor | None) -> torch.Tensor:
        operand_dtypes.append(inputs.dtype)
        return original(inputs, *args)

    monkeypatch.setattr(cpu_inference, "_linear", recorded)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = logits(model, tokens, lengths, LEAN).float()
    assert torch.bfloat16 in operand_dtypes  # the lean path ran, with bf16 matmuls
    assert operand_dtypes.count(torch.float32) == 2  # only layer 1's per-token gate tables
    torch.testing.assert_close(low, reference, atol=3e-2, rtol=3e-2)
