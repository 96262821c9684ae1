"""Attention pooling: output shapes for every cell x direction, and padding invariance."""

from __future__ import annotations

import pytest
import torch

from rnnclf.models.classifier import RNNClassifier


def _model(cell: str, bidirectional: bool, num_layers: int = 1) -> RNNClassifier:
    torch.manual_seed(0)
    model = RNNClassifier(vocab_size=30, num_classes=4, embedding_dim=8, cell=cell,
                          hidden_size=6, num_layers=num_layers, bidirectional=bidirectional,
                          pooling="attention")
    return model.eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_attention_logits_shape(cell: str, bidirectional: bool, num_layers: int) -> None:
    model = _model(cell, bidirectional, num_layers)
    tokens = torch.randint(2, 30, (5, 7))
    lengths = torch.tensor([7, 3, 1, 5, 2])
    logits = model(tokens, lengths)
    assert logits.shape == (5, 4)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_attention_is_padding_invariant(cell: str) -> None:
    """A text's logits do not depend on how much padding its batch adds, or on the pad ids."""
    model = _model(cell, bidirectional=True)
    text = torch.tensor([5, 9, 3, 12])
    alone = model(text.unsqueeze(0), torch.tensor([4]))
    padded = torch.zeros(2, 11, dtype=torch.long)
    padded[0, :4] = text
    padded[1, :11] = torch.arange(2, 13)
    in_batch = model(padded, torch.tensor([4, 11]))
    garbage = padded.clone()
    garbage[0, 4:] = 17  # ids past the length must be ignored, not just zeros
    with_garbage = model(garbage, torch.tensor([4, 11]))
    torch.testing.assert_close(in_batch[0], alone[0])
    torch.testing.assert_close(with_garbage[0], alone[0])


def test_attention_weights_depend_on_content() -> None:
    """The query is learned: changing it changes the pooled vector (it is not a plain mean)."""
    model = _model("gru", bidirectional=True)
    tokens = torch.randint(2, 30, (3, 6))
    lengths = torch.tensor([6, 4, 2])
    before = model(tokens, lengths)
    with torch.no_grad():
        model.attention_query.mul_(25.0)
    after = model(tokens, lengths)
    assert not torch.allclose(before, after)
    assert model.attention_query.requires_grad


def test_attention_gets_gradients() -> None:
    model = _model("gru", bidirectional=False).train()
    logits = model(torch.randint(2, 30, (4, 5)), torch.tensor([5, 4, 3, 1]))
    logits.sum().backward()
    assert model.attention_query.grad is not None
    assert model.attention_query.grad.abs().sum() > 0
