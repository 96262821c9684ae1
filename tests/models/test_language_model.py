"""The language model over the classifier's encoder: targets, directions, loss, state dict."""

from __future__ import annotations

import pytest
import torch

from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.language_model import LanguageModel, lm_targets


def _model(output: str = "adaptive", layers: int = 1, bidirectional: bool = True,
           vocab: int = 40, cell: str = "gru") -> LanguageModel:
    torch.manual_seed(0)
    encoder = RNNClassifier(vocab, 3, embedding_dim=8, hidden_size=12, num_layers=layers,
                            bidirectional=bidirectional, cell=cell, embedding_dropout=0.0)
    return LanguageModel(encoder, output).eval()


def test_targets_shift_forward_to_next_and_backward_to_previous_token() -> None:
    tokens = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    lengths = torch.tensor([4, 2])
    mask, targets = lm_targets(tokens, lengths, backward=False, classes=100)
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert targets[mask].tolist() == [6, 7, 8, 10]  # the state at t predicts token t+1
    mask, targets = lm_targets(tokens, lengths, backward=True, classes=100)
    assert mask.tolist() == [[False, True, True, True], [False, True, False, False]]
    assert targets[mask].tolist() == [5, 6, 7, 9]  # the state at t predicts token t-1


def test_targets_beyond_the_output_vocabulary_become_unk() -> None:
    tokens = torch.tensor([[5, 60, 7]])
    _, targets = lm_targets(tokens, torch.tensor([3]), backward=False, classes=50)
    assert targets[0, :2].tolist() == [1, 7]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_no_direction_sees_the_token_it_predicts(layers: int, cell: str) -> None:
    """Changing token 3 leaves the forward states before it and the backward states after it
    as they were: neither direction can read its own target."""
    model = _model(layers=layers, cell=cell)
    tokens = torch.tensor([[2, 3, 4, 5, 6, 7, 8]])
    lengths = torch.tensor([7])
    changed = tokens.clone()
    changed[0, 3] = 20
    forward, backward = model.direction_states(tokens, lengths)
    forward2, backward2 = model.direction_states(changed, lengths)
    assert forward.shape == backward.shape == (1, 7, 12)
    torch.testing.assert_close(forward[0, :3], forward2[0, :3])  # predict tokens 1..3
    torch.testing.assert_close(backward[0, 4:], backward2[0, 4:])  # predict tokens 3..5
    assert not torch.allclose(forward[0, 3:], forward2[0, 3:])
    assert not torch.allclose(backward[0, :4], backward2[0, :4])


def test_padding_changes_nothing() -> None:
    model = _model()
    tokens = torch.tensor([[2, 3, 4, 5]])
    padded = torch.tensor([[2, 3, 4, 5, 0, 0]])
    lengths = torch.tensor([4])
    torch.testing.assert_close(model(tokens, lengths), model(padded, lengths))


@pytest.mark.parametrize("output", ["adaptive", "tied"])
def test_loss_decreases_on_a_tiny_corpus(output: str) -> None:
    """Two sentences repeated: the model learns them, far below the uniform 40-way loss."""
    model = _model(output).train()
    tokens = torch.tensor([[2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 0, 0]])
    lengths = torch.tensor([6, 4])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = model(tokens, lengths) / model.predicted_tokens(lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 3.0  # about log(40) at the start
    assert losses[-1] < 0.5 * losses[0]


def test_unidirectional_has_one_head_and_predicts_length_minus_one() -> None:
    model = _model(bidirectional=False)
    assert len(model.heads) == 1
    assert model.predicted_tokens(torch.tensor([5, 1, 3])) == 4 + 0 + 2


@pytest.mark.parametrize("output", ["adaptive", "tied"])
def test_the_encoder_entries_of_its_state_dict_load_into_a_classifier(output: str) -> None:
    model = _model(output, layers=2)
    state = model.state_dict()
    encoder_state = {name: value for name, value in state.items()
                     if not name.startswith("heads.")}
    classifier = RNNClassifier(40, 4, embedding_dim=8, hidden_size=12, num_layers=2)
    missing, unexpected = classifier.load_state_dict(encoder_state, strict=False)
    assert not unexpected
    assert set(missing) == {"classifier.weight", "classifier.bias"}
    torch.testing.assert_close(classifier.rnn.weight_hh_l1_reverse, model.rnn.weight_hh_l1_reverse)
