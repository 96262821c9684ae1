"""The model's reference path against PyTorch's packed RNNs, and the CPU backend against it.

The reference path (`RNNClassifier.forward` without a backend) is what CUDA, export and these
tests read; the CPU backend (rnnclf/accel/backend.py) must compute the same logits and
gradients for every cell x direction x pooling x depth, and leave the state dict alone.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnclf.accel.backend import CpuBackend, describe_backend, select_backend
from rnnclf.config.schema import ModelConfig
from rnnclf.models.build import build_model
from rnnclf.models.classifier import CELLS, POOLINGS, RNNClassifier
from rnnclf.models.pooling import pool_states

VOCAB, EMBEDDING, HIDDEN = 30, 8, 6
GRID = list(itertools.product(CELLS, (False, True), POOLINGS, (1, 2)))


def model_of(cell: str, bidirectional: bool, pooling: str, num_layers: int,
             backend: CpuBackend | None = None) -> RNNClassifier:
    torch.manual_seed(0)
    return RNNClassifier(VOCAB, 4, EMBEDDING, cell, HIDDEN, num_layers=num_layers,
                         bidirectional=bidirectional, pooling=pooling, dropout=0.0,
                         ngram_order=2, ngram_buckets=31, ngram_dim=4, backend=backend)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """7 texts of 1 to 9 tokens, unsorted, padded 2 past the longest: tokens, lengths, labels."""
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 9, 1, 3, 9, 6, 2])
    tokens = torch.randint(1, VOCAB, (len(lengths), 11), generator=generator)
    tokens[torch.arange(11) >= lengths.unsqueeze(1)] = 0
    return tokens, lengths, torch.randint(0, 4, (len(lengths),), generator=generator)


def training_step(model: RNNClassifier) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    tokens, lengths, labels = batch()
    model.zero_grad(set_to_none=True)
    logits = model(tokens, lengths)
    F.cross_entropy(logits, labels).backward()
    return logits.detach(), {name: parameter.grad.clone()
                             for name, parameter in model.named_parameters()}


@pytest.mark.parametrize(("cell", "bidirectional", "pooling", "num_layers"), GRID)
def test_cpu_backend_equals_the_reference_path(cell: str, bidirectional: bool, pooling: str,
                                               num_layers: int) -> None:
    """Training (the padded path, fused GRU) and inference (cpu_inference) alike."""
    reference = model_of(cell, bidirectional, pooling, num_layers)
    fast = model_of(cell, bidirectional, pooling, num_layers, backend=CpuBackend())
    expected_logits, expected_grads = training_step(reference)
    logits, grads = training_step(fast)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert expected_grads[name].abs().sum() > 0 or pooling == "last", name
        torch.testing.assert_close(grad, expected_grads[name], atol=1e-5, rtol=1e-5, msg=name)
    tokens, lengths, _ = batch()
    with torch.inference_mode():
        torch.testing.assert_close(fast.eval()(tokens, lengths), reference.eval()(tokens, lengths),
                                   atol=1e-5, rtol=1e-5)


def packed_features(model: RNNClassifier, tokens: torch.Tensor, lengths: torch.Tensor
                    ) -> torch.Tensor:
    """PyTorch's own packed RNN over the batch, pooled: an independent oracle."""
    packed = pack_padded_sequence(model.embedding(tokens), lengths, batch_first=True,
                                  enforce_sorted=False)
    outputs, final = model.rnn(packed)
    if model.pooling == "last":
        hidden = final[0] if isinstance(final, tuple) else final  # LSTM: (h, c)
        return torch.cat([hidden[-2], hidden[-1]], dim=1) if model.bidirectional else hidden[-1]
    states, _ = pad_packed_sequence(outputs, batch_first=True)  # 0-padded
    return pool_states(states, lengths, model.pooling, model.attention_projection,
                       model.attention_query)


@pytest.mark.parametrize(("cell", "bidirectional", "pooling", "num_layers"), GRID)
def test_reference_path_equals_packed_sequences(cell: str, bidirectional: bool, pooling: str,
                                                num_layers: int) -> None:
    model = model_of(cell, bidirectional, pooling, num_layers).eval()
    tokens, lengths, _ = batch()
    features = model.recurrent_features(tokens, lengths)
    expected = packed_features(model, tokens, lengths)
    torch.testing.assert_close(features, expected, atol=1e-6, rtol=1e-5)


def test_reference_gradients_reach_the_rnn_parameters_themselves() -> None:
    """The one-direction modules hold the rnn's own Parameters: gradients land on model.rnn."""
    model = model_of("lstm", True, "mean", 2)
    _, grads = training_step(model)
    torch.testing.assert_close(model.rnn.weight_hh_l1_reverse.grad,
                               grads["rnn.weight_hh_l1_reverse"])
    assert all(model.rnn.get_parameter(name).grad.abs().sum() > 0
               for name, _ in model.rnn.named_parameters())


def expected_keys(cell: str, bidirectional: bool, num_layers: int) -> list[str]:
    """A model's state-dict keys as a plain nn.RNN/LSTM/GRU named `rnn` gives them."""
    rnn = CELLS[cell](EMBEDDING, HIDDEN, num_layers=num_layers, bidirectional=bidirectional)
    return (["embedding.weight"] + [f"rnn.{key}" for key in rnn.state_dict()]
            + ["ngram_bag.table.weight", "classifier.weight", "classifier.bias"])


@pytest.mark.parametrize(("cell", "bidirectional", "num_layers"),
                         list(itertools.product(CELLS, (False, True), (1, 2))))
def test_the_backend_is_not_in_the_state_dict(cell: str, bidirectional: bool,
                                              num_layers: int) -> None:
    plain = model_of(cell, bidirectional, "max", num_layers)
    fast = model_of(cell, bidirectional, "max", num_layers, backend=CpuBackend())
    assert list(fast.state_dict()) == list(plain.state_dict()) == expected_keys(
        cell, bidirectional, num_layers)
    assert [name for name, _ in fast.named_modules()] == [name for name, _ in
                                                          plain.named_modules()]
    assert all(parameter.device.type == "cpu" for parameter in fast.parameters())
    plain.load_state_dict(fast.state_dict())  # checkpoints move between the two


def test_the_reference_path_follows_the_model_to_another_dtype_and_copies() -> None:
    model = model_of("gru", True, "attention", 2).double()
    tokens, lengths, _ = batch()
    logits = model(tokens, lengths)
    assert logits.dtype == torch.float64
    twin = copy.deepcopy(model)
    torch.testing.assert_close(twin(tokens, lengths), logits)


def test_build_model_passes_the_backend_and_select_backend_picks_it_by_device() -> None:
    backend = select_backend("cpu")
    assert isinstance(backend, CpuBackend) and backend == CpuBackend()
    assert select_backend(torch.device("cuda")) is None  # the reference path, cuDNN
    assert select_backend("cpu", fused_gru=False) == CpuBackend(fused_gru=False)
    model = build_model(ModelConfig(embedding_dim=8, hidden_size=6), VOCAB, 4, backend=backend)
    assert model.backend is backend
    assert build_model(ModelConfig(embedding_dim=8, hidden_size=6), VOCAB, 4).backend is None
    assert describe_backend(backend, "cpu").startswith("cpu: fused GRU")
    assert "padded segments" in describe_backend(backend, "cpu")
    assert "reference path" in describe_backend(None, "cuda")
    with pytest.raises(ValueError, match="max_padded_work"):
        CpuBackend(max_padded_work=0.0)


def test_the_backend_leaves_cuda_batches_to_the_reference_path() -> None:
    model = model_of("gru", True, "max", 1)
    assert CpuBackend().handles(model, torch.zeros(2, 3, dtype=torch.int64))
    assert not CpuBackend().handles(model, torch.zeros(2, 3, dtype=torch.int64, device="meta"))
    assert isinstance(model.rnn, nn.GRU)


def test_parameters_replaced_by_load_state_dict_assign_are_the_ones_that_run() -> None:
    model = model_of("gru", True, "mean", 2)
    tokens, lengths, _ = batch()
    model(tokens, lengths)  # the one-direction modules exist now
    other = model_of("gru", True, "mean", 2)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.mul_(2)
    model.load_state_dict(other.state_dict(), assign=True)
    torch.testing.assert_close(model(tokens, lengths), other(tokens, lengths))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cell", list(CELLS))
def test_the_reference_path_on_cuda_matches_the_cpu(cell: str) -> None:
    """cuDNN runs the one-direction modules; logits and gradients within float rounding."""
    model = model_of(cell, True, "max", 2)
    expected_logits, expected_grads = training_step(model)
    model.cuda()
    tokens, lengths, labels = batch()
    model.zero_grad(set_to_none=True)
    logits = model(tokens.cuda(), lengths)
    F.cross_entropy(logits, labels.cuda()).backward()
    torch.testing.assert_close(logits.cpu(), expected_logits, atol=1e-4, rtol=1e-4)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad.cpu(), expected_grads[name], atol=1e-4,
                                   rtol=1e-4, msg=name)
