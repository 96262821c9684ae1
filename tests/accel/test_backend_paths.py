"""The CPU backend's paths compute what the reference (packed nn.RNN) path computes: rows in any
order, max pooling over padding, padded runs and their segments, with gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_support import batch_of
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnclf.accel.backend import CpuBackend, padded_segments
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.pooling import pool_states


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("backend", [CpuBackend(), None], ids=["cpu-backend", "reference"])
def test_presorted_and_unsorted_rows_give_the_same_logits(cell: str, pooling: str,
                                                          backend: CpuBackend | None) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, cell, 8, num_layers=2, pooling=pooling,
                          backend=backend).eval()
    tokens, lengths, _ = batch_of()  # longest first
    shuffled = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.inference_mode():
        sorted_logits = model(tokens, lengths)
        shuffled_logits = model(tokens[shuffled], lengths[shuffled])
    assert torch.allclose(sorted_logits[shuffled], shuffled_logits, atol=1e-6)


@pytest.mark.parametrize("backend", [CpuBackend(), None], ids=["cpu-backend", "reference"])
def test_max_pooling_over_minus_inf_padding_matches_the_masked_max(
        backend: CpuBackend | None) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, "gru", 8, pooling="max", backend=backend).eval()
    tokens, lengths, _ = batch_of()
    with torch.inference_mode():
        packed = pack_padded_sequence(model.embedding(tokens), lengths, batch_first=True)
        states, _ = pad_packed_sequence(model.rnn(packed)[0], batch_first=True)
        expected = model.classifier(pool_states(states, lengths, "max"))
        assert torch.allclose(model(tokens, lengths), expected, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padded_cpu_path_matches_the_reference_path(cell: str, bidirectional: bool,
                                                    pooling: str) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, cell, 8, num_layers=2, bidirectional=bidirectional,
                          pooling=pooling, dropout=0.0)
    tokens, lengths, labels = batch_of()
    shuffled = torch.tensor([3, 0, 5, 1, 4, 2])  # unsorted rows too
    tokens, lengths, labels = tokens[shuffled], lengths[shuffled], labels[shuffled]
    results = []
    for backend in (None, CpuBackend(max_padded_work=100.0)):  # reference; one padded run
        model.backend = backend
        model.zero_grad()
        logits = model(tokens, lengths)
        F.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (packed_logits, packed_grads), (padded_logits, padded_grads) = results
    assert torch.allclose(packed_logits, padded_logits, atol=1e-6)
    for packed_grad, padded_grad in zip(packed_grads, padded_grads):
        assert torch.allclose(packed_grad, padded_grad, atol=1e-6)


def test_padded_segments_bound_the_padding() -> None:
    assert padded_segments(torch.tensor([50, 1]), 2.0) == [(0, 2)]  # 100 positions, 51 tokens
    assert padded_segments(torch.tensor([1, 50, 1, 1]), 2.0) == [(0, 2), (2, 4)]
    assert padded_segments(torch.tensor([9, 5, 4, 1]), 2.0) == [(0, 4)]
    assert padded_segments(torch.tensor([7]), 2.0) == [(0, 1)]
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 400, (128,), generator=generator)
    ranked = lengths.sort(descending=True).values
    segments = padded_segments(lengths, 2.0)
    assert segments[0][0] == 0 and segments[-1][1] == 128
    assert all(end == next_start for (_, end), (next_start, _) in zip(segments, segments[1:]))
    for start, end in segments:
        rows = ranked[start:end]
        assert end - start == 1 or int(rows[0]) * len(rows) <= 2.0 * int(rows.sum())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "max", "attention"])
def test_heavily_padded_batches_run_padded_in_segments(monkeypatch: pytest.MonkeyPatch, cell: str,
                                                       pooling: str) -> None:
    """A batch with a few long texts splits into runs of similar length and gives the
    reference path's logits and gradients, rows in their order."""
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, cell, 8, num_layers=2, bidirectional=True, pooling=pooling,
                          dropout=0.0)
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([3, 40, 2, 5, 1, 17, 4, 3])  # unsorted; 8 x 40 = 320 for 75 tokens
    tokens = torch.randint(2, 30, (8, 44), generator=generator)  # padded past the longest too
    tokens[torch.arange(44).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    widths: list[int] = []
    original = CpuBackend._padded_forward

    def recorded(self: CpuBackend, model: RNNClassifier, embedded: torch.Tensor,
                 lengths: torch.Tensor) -> torch.Tensor:
        widths.append(embedded.size(1))
        return original(self, model, embedded, lengths)

    monkeypatch.setattr(CpuBackend, "_padded_forward", recorded)
    results = []
    for backend in (None, CpuBackend(max_padded_work=2.0)):  # the reference path first
        model.backend = backend
        model.zero_grad()
        logits = model(tokens, lengths)
        F.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    assert widths == [40, 4]  # runs [40, 17, 5] (120 positions, 62 tokens), [4, 3, 3, 2, 1]
    (packed_logits, packed_grads), (padded_logits, padded_grads) = results
    torch.testing.assert_close(padded_logits, packed_logits, atol=1e-6, rtol=1e-5)
    for packed_grad, padded_grad in zip(packed_grads, padded_grads, strict=True):
        torch.testing.assert_close(padded_grad, packed_grad, atol=1e-6, rtol=1e-5)
