"""The model (shapes, padding invariance, pooling), batching, the lr schedule and the metrics."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rnnclf.config.schema import ModelConfig, OptimConfig
from rnnclf.data.batches import (
    bucketed_batches,
    collate,
    epoch_batches,
    eval_batches,
    eval_order,
    steps_per_epoch,
)
from rnnclf.data.dataset import encode_texts
from rnnclf.data.text import Vocab
from rnnclf.inference.metrics import classification_report, confusion_matrix, format_report
from rnnclf.inference.scoring import predict_split
from rnnclf.models.build import build_model
from rnnclf.models.classifier import RNNClassifier, count_parameters
from rnnclf.training.optimizers import build_optimizer
from rnnclf.training.schedule import learning_rate

VOCAB, CLASSES = 30, 4
CELLS = ("rnn", "lstm", "gru")
POOLINGS = ("last", "mean", "max")


def tiny_model(cell: str = "gru", bidirectional: bool = True, pooling: str = "max",
               num_layers: int = 1, seed: int = 0, **kwargs: float) -> RNNClassifier:
    torch.manual_seed(seed)
    return RNNClassifier(VOCAB, CLASSES, embedding_dim=8, cell=cell, hidden_size=12,
                         num_layers=num_layers, bidirectional=bidirectional, pooling=pooling,
                         **kwargs)


def pad(sequences: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = width or max(len(sequence) for sequence in sequences)
    tokens = torch.zeros(len(sequences), width, dtype=torch.int64)
    for row, sequence in enumerate(sequences):
        tokens[row, :len(sequence)] = torch.tensor(sequence)
    return tokens, torch.tensor([len(sequence) for sequence in sequences])


SENTENCE = [5, 9, 2, 17, 3]
LONGER = [4, 8, 15, 16, 23, 29, 7, 11, 12]
SHORTER = [21, 6]


# --- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "bidirectional", "num_layers", "pooling"),
                         list(itertools.product(CELLS, (False, True), (1, 2), POOLINGS)))
def test_output_shape(cell: str, bidirectional: bool, num_layers: int, pooling: str) -> None:
    model = tiny_model(cell, bidirectional, pooling, num_layers).eval()
    tokens, lengths = pad([SENTENCE, LONGER, SHORTER])
    logits = model(tokens, lengths)
    assert logits.shape == (3, CLASSES)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert model.classifier.in_features == 12 * (2 if bidirectional else 1)


def test_build_model_follows_the_config() -> None:
    config = ModelConfig(embedding_dim=8, cell="lstm", hidden_size=10, num_layers=2,
                         bidirectional=False, pooling="mean", rnn_dropout=0.1)
    model = build_model(config, vocab_size=50, num_classes=3)
    assert isinstance(model.rnn, torch.nn.LSTM)
    assert (model.rnn.hidden_size, model.rnn.num_layers, model.rnn.bidirectional) == (10, 2, False)
    assert model.rnn.dropout == pytest.approx(0.1)
    assert model.embedding.num_embeddings == 50 and model.embedding.padding_idx == 0
    assert model.classifier.out_features == 3
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) > 0


def test_model_rejects_unknown_cell_and_pooling() -> None:
    with pytest.raises(ValueError):
        RNNClassifier(10, 2, cell="transformer")
    with pytest.raises(ValueError):
        RNNClassifier(10, 2, pooling="median")


# --- padding invariance ------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "bidirectional", "pooling"),
                         list(itertools.product(CELLS, (False, True), POOLINGS)))
def test_padding_invariance(cell: str, bidirectional: bool, pooling: str) -> None:
    """A text alone gives the same logits as inside a padded batch, wherever it sits."""
    model = tiny_model(cell, bidirectional, pooling, num_layers=2, dropout=0.5).eval()
    alone = model(*pad([SENTENCE]))[0]
    batch = model(*pad([LONGER, SENTENCE, SHORTER]))
    torch.testing.assert_close(batch[1], alone, atol=1e-5, rtol=0)
    # Extra padding columns beyond the longest text change nothing either.
    wide = model(*pad([SHORTER, SENTENCE], width=len(LONGER) + 4))
    torch.testing.assert_close(wide[1], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(wide[0], model(*pad([SHORTER]))[0], atol=1e-5, rtol=0)


def test_padding_token_values_do_not_matter() -> None:
    """Positions past a text's length are ignored even when they hold real token ids."""
    model = tiny_model("lstm", True, "mean").eval()
    tokens, lengths = pad([LONGER, SENTENCE])
    garbage = tokens.clone()
    garbage[1, len(SENTENCE):] = 7
    torch.testing.assert_close(model(garbage, lengths), model(tokens, lengths), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_last_pooling_bidirectional_uses_the_true_ends(cell: str) -> None:
    """last = [forward state at the last real token, backward state at the first token]."""
    model = tiny_model(cell, True, "last").eval()
    tokens, lengths = pad([LONGER, SENTENCE, SHORTER])
    logits = model(tokens, lengths)
    hidden = 12
    with torch.no_grad():
        for row, sequence in enumerate([LONGER, SENTENCE, SHORTER]):
            embedded = model.embedding(torch.tensor([sequence]))  # unpadded, batch of 1
            states, _ = model.rnn(embedded)  # (1, T, 2H): forward half, then backward half
            pooled = torch.cat([states[0, -1, :hidden], states[0, 0, hidden:]])
            torch.testing.assert_close(logits[row], model.classifier(pooled), atol=1e-5, rtol=0)


def test_last_pooling_is_not_the_padded_last_position() -> None:
    """Guard for the test above: reading the state at the padded end would give other logits."""
    model = tiny_model("gru", True, "last").eval()
    tokens, lengths = pad([LONGER, SHORTER])
    with torch.no_grad():
        states, _ = model.rnn(model.embedding(tokens))  # runs over the padding
        wrong = model.classifier(torch.cat([states[1, -1, :12], states[1, 0, 12:]]))
        assert not torch.allclose(model(tokens, lengths)[1], wrong, atol=1e-4)


@pytest.mark.parametrize("pooling", ("mean", "max"))
def test_mean_and_max_pooling_by_hand(pooling: str) -> None:
    model = tiny_model("gru", False, pooling).eval()
    tokens, lengths = pad([LONGER, SENTENCE])
    with torch.no_grad():
        states, _ = model.rnn(model.embedding(torch.tensor([SENTENCE])))
        pooled = states[0].mean(0) if pooling == "mean" else states[0].amax(0)
        torch.testing.assert_close(model(tokens, lengths)[1], model.classifier(pooled),
                                   atol=1e-5, rtol=0)


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "pooling"), list(itertools.product(CELLS, POOLINGS)))
def test_gradient_flows_to_every_parameter(cell: str, pooling: str) -> None:
    model = tiny_model(cell, True, pooling, num_layers=2).train()
    tokens, lengths = pad([LONGER, SENTENCE, SHORTER])
    loss = torch.nn.functional.cross_entropy(model(tokens, lengths), torch.tensor([0, 1, 2]))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert model.embedding.weight.grad[0].abs().sum() == 0  # the padding row never learns
    used = sorted(set(LONGER + SENTENCE + SHORTER))
    assert (model.embedding.weight.grad[used].abs().sum(1) > 0).all()


def test_optimizer_groups_skip_decay_for_embedding_and_biases() -> None:
    model = tiny_model()
    optimizer = build_optimizer(OptimConfig(weight_decay=0.1), model)
    decayed, not_decayed = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and not_decayed["weight_decay"] == 0.0
    assert any(p is model.embedding.weight for p in not_decayed["params"])
    assert any(p is model.classifier.weight for p in decayed["params"])
    assert all(p.ndim >= 2 for p in decayed["params"])
    assert len(decayed["params"]) + len(not_decayed["params"]) == len(list(model.parameters()))
    assert isinstance(build_optimizer(OptimConfig(name="sgd"), model), torch.optim.SGD)


# --- batches -----------------------------------------------------------------------------------


def make_split(lengths: list[int]):
    vocab = Vocab(["<pad>", "<unk>", *[f"w{i}" for i in range(2, 50)]])
    token_lists = [[f"w{2 + (row + position) % 48}" for position in range(length)]
                   for row, length in enumerate(lengths)]
    return encode_texts(token_lists, [row % 4 for row in range(len(lengths))], vocab)


def test_encode_texts_offsets_and_empty_text() -> None:
    split = encode_texts([["a", "b"], [], ["c"]], [0, 1, 2], Vocab(["<pad>", "<unk>", "a", "b"]))
    assert split.lengths.tolist() == [2, 1, 1]  # an empty text becomes one <unk>
    assert split.offsets.tolist() == [0, 2, 3]
    assert split.tokens.tolist() == [2, 3, 1, 1]
    assert split.labels.tolist() == [0, 1, 2]


def test_collate_pads_and_truncates() -> None:
    split = make_split([3, 7, 1])
    batch = collate(split, torch.tensor([1, 0, 2]), max_length=5)
    assert batch.tokens.shape == (3, 5)
    assert batch.lengths.tolist() == [5, 3, 1]
    assert batch.labels.tolist() == [1, 0, 2]
    row1 = split.tokens[split.offsets[1]:split.offsets[1] + 5].long()
    assert batch.tokens[0].tolist() == row1.tolist()  # truncation keeps the first tokens
    row0 = split.tokens[split.offsets[0]:split.offsets[0] + 3].long()
    assert batch.tokens[1].tolist() == [*row0.tolist(), 0, 0]
    assert batch.tokens[2, 1:].tolist() == [0, 0, 0, 0]
    assert batch.tokens.dtype == torch.int64


def test_collate_width_is_the_longest_kept_length() -> None:
    split = make_split([2, 4, 3])
    assert collate(split, torch.tensor([0, 2]), max_length=100).tokens.shape == (2, 3)


def test_bucketed_batches_cover_every_row_once() -> None:
    lengths = torch.randint(1, 60, (1000,), generator=torch.Generator().manual_seed(3))
    batches = bucketed_batches(lengths, 16, torch.Generator().manual_seed(0))
    everything = torch.cat(batches)
    assert sorted(everything.tolist()) == list(range(1000))
    assert all(1 <= len(batch) <= 16 for batch in batches)
    assert len(batches) == steps_per_epoch(1000, 16)
    assert sum(len(batch) < 16 for batch in batches) <= 2  # one short batch per pool at most


def test_bucketed_batches_group_similar_lengths() -> None:
    lengths = torch.randint(1, 200, (800,), generator=torch.Generator().manual_seed(1))
    batches = bucketed_batches(lengths, 16, torch.Generator().manual_seed(0))
    spread = sum((lengths[b].max() - lengths[b].min()).item() for b in batches) / len(batches)
    assert spread < 30  # random batches of 16 would spread over ~180


def test_bucketed_batches_deterministic_per_seed() -> None:
    lengths = torch.randint(1, 60, (500,), generator=torch.Generator().manual_seed(3))

    def plan(seed: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed)
        return [batch.tolist() for batch in bucketed_batches(lengths, 8, generator)]

    assert plan(5) == plan(5)
    assert plan(5) != plan(6)


def test_epoch_batches_resume_skips_the_first_steps() -> None:
    split = make_split([1 + (i * 7) % 13 for i in range(300)])
    full = [b.labels.tolist() for b in epoch_batches(split, 10, 8, seed=1, epoch=2)]
    again = [b.labels.tolist() for b in epoch_batches(split, 10, 8, seed=1, epoch=2)]
    tail = [b.labels.tolist() for b in epoch_batches(split, 10, 8, seed=1, epoch=2, start_step=4)]
    other_epoch = [b.labels.tolist() for b in epoch_batches(split, 10, 8, seed=1, epoch=3)]
    assert full == again and tail == full[4:] and other_epoch != full
    assert len(full) == steps_per_epoch(300, 10)


@pytest.mark.parametrize(("rows", "batch_size", "steps"), [
    (1, 64, 1), (64, 64, 1), (65, 64, 2), (3200, 64, 50), (3201, 64, 51), (1000, 16, 63)])
def test_steps_per_epoch(rows: int, batch_size: int, steps: int) -> None:
    assert steps_per_epoch(rows, batch_size) == steps


def test_eval_batches_and_predict_split_keep_row_order() -> None:
    lengths = [5, 1, 9, 3, 12, 2, 7]
    split = make_split(lengths)
    batches = list(eval_batches(split, batch_size=3, max_length=10))
    assert [len(b.labels) for b in batches] == [3, 3, 1]
    assert all(b.lengths.tolist() == sorted(b.lengths.tolist()) for b in batches)
    assert eval_order(split, 10).tolist() == sorted(range(7), key=lambda i: min(lengths[i], 10))
    model = tiny_model("gru", True, "mean").eval()
    logits, labels = predict_split(model, split, 3, 10, torch.device("cpu"))
    assert labels.tolist() == split.labels.tolist()
    with torch.no_grad():
        for row in range(len(lengths)):
            one = collate(split, torch.tensor([row]), 10)
            torch.testing.assert_close(logits[row], model(one.tokens, one.lengths)[0],
                                       atol=1e-5, rtol=0)


# --- learning-rate schedule -----------------------------------------------------------------------


def lrs(schedule: str, total: int = 100, warmup: float = 0.1, lr: float = 1.0) -> list[float]:
    config = OptimConfig(lr=lr, schedule=schedule, warmup_fraction=warmup)
    return [learning_rate(step, total, config) for step in range(total)]


@pytest.mark.parametrize("schedule", ("linear", "cosine", "constant"))
def test_warmup_rises_linearly_to_the_peak(schedule: str) -> None:
    values = lrs(schedule)
    assert values[0] == pytest.approx(0.1)
    assert values[4] == pytest.approx(0.5)
    assert values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0)  # first step after warm-up is at the peak
    assert all(b > a for a, b in itertools.pairwise(values[:10]))
    assert all(0 < value <= 1.0 for value in values)


def test_linear_decay_endpoints() -> None:
    values = lrs("linear")
    assert values[-1] == pytest.approx(1 / 90)  # one step short of zero at the last step
    assert values[55] == pytest.approx(0.5)
    assert all(b < a for a, b in itertools.pairwise(values[10:]))
    assert learning_rate(100, 100, OptimConfig(lr=1.0, warmup_fraction=0.1)) == pytest.approx(0)
    assert learning_rate(150, 100, OptimConfig(lr=1.0, warmup_fraction=0.1)) == pytest.approx(0)


def test_cosine_decay_endpoints() -> None:
    values = lrs("cosine")
    assert values[55] == pytest.approx(0.5)
    assert values[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert all(b < a for a, b in itertools.pairwise(values[10:]))


def test_constant_schedule_and_no_warmup() -> None:
    assert lrs("constant")[10:] == [1.0] * 90
    assert lrs("linear", warmup=0.0, lr=0.002)[0] == pytest.approx(0.002)
    assert lrs("cosine", total=1, warmup=0.05)[0] == pytest.approx(1.0)


# --- metrics -------------------------------------------------------------------------------------


def test_classification_report_by_hand() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 2, 0])
    report = classification_report(labels, predictions, ["A", "B", "C", "D"])
    assert report["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["num_examples"] == 6
    per_class = report["per_class"]
    assert per_class["A"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per_class["B"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per_class["C"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert per_class["D"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3 + 0.0) / 4)
    assert report["labels"] == ["A", "B", "C", "D"]
    text = format_report(report)
    assert "accuracy  0.6667" in text and "macro-F1  0.4917" in text


def test_confusion_matrix_rows_are_true_labels() -> None:
    matrix = confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 1]), 2)
    assert matrix.tolist() == [[0, 2], [0, 1]]


def test_perfect_predictions() -> None:
    labels = torch.tensor([3, 1, 2, 0, 3])
    report = classification_report(labels, labels.clone(), ["a", "b", "c", "d"])
    assert report["accuracy"] == 1.0 and report["macro_f1"] == pytest.approx(1.0)
