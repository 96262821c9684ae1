"""The fused CPU GRU (rnnclf/accel/fused_gru.py) computes what nn.GRU / ATen's kernel computes."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from kernel_support import gru_weights
from torch import nn

import rnnclf.accel.backend
import rnnclf.accel.fused_gru
from rnnclf.accel.backend import CpuBackend
from rnnclf.accel.fused_gru import FusedGRU, fused_gru
from rnnclf.models.classifier import POOLINGS, RNNClassifier

EMBEDDING, HIDDEN = 8, 6
FUSED = CpuBackend()  # a training GRU runs through fused_gru
ATEN = CpuBackend(fused_gru=False)  # ATen's GRU kernel, one direction at a time


@pytest.fixture(autouse=True)
def _both_gate_maths(gate_math: object) -> None:
    """Every test here runs with the C gate kernels and with ATen ops (conftest.gate_math)."""



def assert_matches_gru(gru: nn.GRU, inputs: torch.Tensor, leaf: torch.Tensor) -> None:
    """fused_gru on time-major `inputs` gives nn.GRU's outputs and the same gradients for
    `leaf` (the tensor `inputs` was made from) and every GRU parameter."""
    reference = gru(inputs)[0]
    fused = fused_gru(inputs, gru_weights(gru))
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    expected = torch.autograd.grad(reference.sum(), [leaf, *gru.parameters()])
    actual = torch.autograd.grad(fused.sum(), [leaf, *gru.parameters()])
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)



def assert_same_gradients(gru: nn.GRU, inputs: torch.Tensor, fused: torch.Tensor,
                          reference: torch.Tensor, upstream: torch.Tensor) -> None:
    """`upstream` through `fused` and through `reference` gives the same gradient for the
    inputs and every GRU parameter."""
    wrt = [inputs, *gru.parameters()]
    expected = torch.autograd.grad(reference, wrt, upstream)
    actual = torch.autograd.grad(fused, wrt, upstream)
    for name, got, want in zip(["inputs", *dict(gru.named_parameters())], actual, expected,
                               strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=name)


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """7 texts of varied lengths (1 to 9 tokens), unsorted, zero-padded: tokens, lengths, labels."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 9, 1, 3, 9, 6, 2])
    tokens = torch.randint(1, 30, (len(lengths), int(lengths.max())), generator=generator)
    tokens[torch.arange(tokens.size(1)) >= lengths.unsqueeze(1)] = 0
    return tokens, lengths, torch.randint(0, 4, (len(lengths),), generator=generator)


def logits_and_gradients(model: RNNClassifier, backend: CpuBackend, seed: int = 0
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One training step's logits and parameter gradients through `backend`."""
    model.backend = backend
    tokens, lengths, labels = padded_batch()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # same dropout masks for both runs
    logits = model(tokens, lengths)
    F.cross_entropy(logits, labels).backward()
    return logits.detach(), [parameter.grad.clone() for parameter in model.parameters()
                             if parameter.grad is not None]


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the model's calls of fused_gru, so a test can't pass by never taking the path."""
    calls: list[int] = []

    def counting(inputs: torch.Tensor, weights: list[list[torch.Tensor]],
                 lengths: torch.Tensor | None = None,
                 matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
        calls.append(len(weights))
        return fused_gru(inputs, weights, lengths, matmul_dtype)

    monkeypatch.setattr(rnnclf.accel.backend, "fused_gru", counting)
    return calls


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]])
def test_gradcheck_float64(directions: int, lengths: list[int] | None) -> None:
    """Every gradient, padded positions included (the backward direction's inert padding)."""
    torch.manual_seed(0)
    steps, batch, features, hidden = 4, 3, 3, 2
    inputs = torch.randn(steps, batch, features, dtype=torch.float64, requires_grad=True)
    shapes = [(3 * hidden, features), (3 * hidden, hidden), (3 * hidden,), (3 * hidden,)]
    weights = [torch.randn(directions, *shape, dtype=torch.float64, requires_grad=True)
               for shape in shapes]
    text_lengths = None if lengths is None else torch.tensor(lengths)
    assert torch.autograd.gradcheck(
        lambda *args: FusedGRU.apply(*args, text_lengths, torch.float64), (inputs, *weights))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_nn_gru_outputs_and_every_gradient(bidirectional: bool) -> None:
    torch.manual_seed(0)
    gru = nn.GRU(EMBEDDING, HIDDEN, bidirectional=bidirectional)
    steps, batch = 11, 5
    inputs = torch.randn(steps, batch, EMBEDDING, requires_grad=True)  # (T, B, E)
    reference = gru(inputs)[0]  # (T, B, D*H)
    fused = fused_gru(inputs, gru_weights(gru))
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(reference)
    assert_same_gradients(gru, inputs, fused, reference, upstream)


def test_buffers_reused_across_sizes_give_fresh_results() -> None:
    """Scratch memory is shared between calls; a long call then a short one must not mix."""
    torch.manual_seed(1)
    gru = nn.GRU(EMBEDDING, HIDDEN)
    for steps in (13, 4, 9):
        inputs = torch.randn(steps, 3, EMBEDDING, requires_grad=True)
        assert_matches_gru(gru, inputs, leaf=inputs)


@pytest.mark.parametrize(("bidirectional", "num_layers", "pooling"),
                         list(itertools.product((False, True), (1, 2), POOLINGS)))
def test_classifier_matches_atens_gru(fused_calls: list[int],
                                      bidirectional: bool, num_layers: int, pooling: str) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, EMBEDDING, "gru", HIDDEN, num_layers=num_layers,
                          bidirectional=bidirectional, pooling=pooling, dropout=0.0)
    reference_logits, reference_grads = logits_and_gradients(model, ATEN)
    assert fused_calls == []
    logits, grads = logits_and_gradients(model, FUSED)
    assert fused_calls == [2 if bidirectional else 1] * num_layers
    torch.testing.assert_close(logits, reference_logits, atol=1e-5, rtol=1e-5)
    assert len(grads) == len(reference_grads) == len(list(model.parameters()))
    for got, want in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_dropout_between_layers_and_frozen_embedding(fused_calls: list[int]) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, EMBEDDING, "gru", HIDDEN, num_layers=2, bidirectional=True,
                          embedding_dropout=0.2, rnn_dropout=0.3, dropout=0.1)
    model.embedding.weight.requires_grad_(False)  # the first layer's input needs no gradient
    reference_logits, reference_grads = logits_and_gradients(model, ATEN, seed=5)
    logits, grads = logits_and_gradients(model, FUSED, seed=5)
    assert fused_calls == [2, 2]
    torch.testing.assert_close(logits, reference_logits, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_inference_keeps_off_the_fused_path(fused_calls: list[int]) -> None:
    model = RNNClassifier(30, 4, EMBEDDING, "gru", HIDDEN, bidirectional=True, backend=FUSED)
    tokens, lengths, _ = padded_batch()
    with torch.no_grad():
        model(tokens, lengths)
    assert fused_calls == []


def bf16_step(model: RNNClassifier, backend: CpuBackend
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return logits_and_gradients(model, backend)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bf16_autocast_training_takes_the_fused_path_with_bf16_matmuls(
        monkeypatch: pytest.MonkeyPatch, fused_calls: list[int], num_layers: int) -> None:
    """Under CPU autocast to bf16 the fused GRU runs with bf16 matmul operands and lands,
    logits and every gradient, within bf16 rounding of ATen's autocast kernel and of fp32."""
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, EMBEDDING, "gru", HIDDEN, num_layers=num_layers,
                          bidirectional=True, dropout=0.0)
    exact_logits, exact_grads = logits_and_gradients(model, FUSED)
    aten_logits, aten_grads = bf16_step(model, ATEN)
    fused_calls.clear()
    operand_dtypes: list[torch.dtype] = []
    original = rnnclf.accel.fused_gru._linear

    def recorded(inputs: torch.Tensor, *args: torch.Tensor | None) -> torch.Tensor:
        operand_dtypes.append(inputs.dtype)
        return original(inputs, *args)

    monkeypatch.setattr(rnnclf.accel.fused_gru, "_linear", recorded)
    logits, grads = bf16_step(model, FUSED)
    assert fused_calls == [2] * num_layers
    assert operand_dtypes and set(operand_dtypes) == {torch.bfloat16}
    assert len(grads) == len(aten_grads) == len(exact_grads) == len(list(model.parameters()))
    # Measured: ~1e-4 from ATen's autocast kernel (same roundings), ~5e-3 from fp32.
    for (reference_logits, reference_grads), atol in (((aten_logits, aten_grads), 4e-3),
                                                      ((exact_logits, exact_grads), 2e-2)):
        torch.testing.assert_close(logits.float(), reference_logits.float(), atol=atol,
                                   rtol=1e-2)
        for got, want in zip(grads, reference_grads, strict=True):
            torch.testing.assert_close(got, want, atol=atol / 2, rtol=1e-2)


def test_lstm_and_rnn_never_take_the_fused_path(fused_calls: list[int]) -> None:
    tokens, lengths, labels = padded_batch()
    for cell in ("lstm", "rnn"):
        model = RNNClassifier(30, 4, EMBEDDING, cell, HIDDEN, backend=FUSED)
        F.cross_entropy(model(tokens, lengths), labels).backward()
    assert fused_calls == []


def test_batches_above_the_position_limit_take_atens_kernel(fused_calls: list[int]) -> None:
    """Very long batches skip the fused path, so its retained scratch memory stays bounded."""
    tokens, lengths, labels = padded_batch()
    model = RNNClassifier(30, 4, EMBEDDING, "gru", HIDDEN,
                          backend=CpuBackend(fused_gru_max_positions=tokens.numel() - 1))
    F.cross_entropy(model(tokens, lengths), labels).backward()
    assert fused_calls == []
    model.backend = CpuBackend(fused_gru_max_positions=tokens.numel())
    F.cross_entropy(model(tokens, lengths), labels).backward()
    assert fused_calls == [2]


def test_non_contiguous_input() -> None:
    torch.manual_seed(2)
    gru = nn.GRU(EMBEDDING, HIDDEN)
    batch_major = torch.randn(3, 5, EMBEDDING, requires_grad=True)  # (B, T, E)
    inputs = batch_major.transpose(0, 1)  # (T, B, E) view, not contiguous
    assert_matches_gru(gru, inputs, leaf=batch_major)


def test_texts_of_varied_lengths_match_a_packed_nn_gru() -> None:
    """With `lengths`, each text's outputs equal nn.GRU's on the packed batch (the backward
    direction starts at the text's own last token), the backward states past a text's end are
    exactly 0, and the gradients equal the packed GRU's."""
    torch.manual_seed(4)
    gru = nn.GRU(EMBEDDING, HIDDEN, bidirectional=True)
    lengths = torch.tensor([9, 4, 7, 1, 9])
    steps = int(lengths.max())
    inputs = torch.randn(steps, len(lengths), EMBEDDING, requires_grad=True)
    packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths, enforce_sorted=False)
    reference, _ = nn.utils.rnn.pad_packed_sequence(gru(packed)[0])  # (T, B, 2H), 0-padded
    fused = fused_gru(inputs, gru_weights(gru), lengths)
    valid = (torch.arange(steps).unsqueeze(1) < lengths).unsqueeze(2)  # (T, B, 1)
    torch.testing.assert_close(fused * valid, reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(fused[..., HIDDEN:] * ~valid, torch.zeros_like(fused[..., HIDDEN:]))
    upstream = torch.randn_like(reference) * valid  # nothing flows in from padded positions
    assert_same_gradients(gru, inputs, fused, reference, upstream)
