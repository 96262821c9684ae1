"""The hashed n-gram bag (model.ngram_order): hashing, masking, padding and the optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnclf.config import Config, from_saved_dict, load_config
from rnnclf.models.build import build_model
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.ngrams import NgramBag, ngram_buckets_of, ngram_table_rows
from rnnclf.training.optimizers import OptimizerGroup, build_optimizer

VOCAB = 50


def padded(texts: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(text) for text in texts])
    tokens = torch.zeros(len(texts), width or int(lengths.max()), dtype=torch.int64)
    for row, text in enumerate(texts):
        tokens[row, : len(text)] = torch.tensor(text)
    return tokens, lengths


def ngram_rows(text: list[int], order: int, buckets: int) -> list[int]:
    tokens, lengths = padded([text])
    return [row for row in ngram_buckets_of(tokens, lengths, order, buckets, VOCAB)[0].tolist()
            if row]


def test_every_ngram_of_each_order_gets_one_row_and_padding_none() -> None:
    tokens, lengths = padded([[5, 6, 7, 8], [9, 10], [11]], width=6)
    rows = ngram_buckets_of(tokens, lengths, 3, 997, VOCAB)
    assert rows.shape == (3, 18)
    counts = (rows > 0).sum(dim=1).tolist()
    assert counts == [4 + 3 + 2, 2 + 1, 1]  # sum over n of max(0, length - n + 1)
    assert int(rows.min()) >= 0 and int(rows.max()) <= 997


def test_an_ngram_hashes_to_the_same_row_wherever_it_occurs() -> None:
    first = ngram_rows([3, 4, 5], order=2, buckets=10_007)
    second = ngram_rows([9, 3, 4, 5, 9], order=2, buckets=10_007)
    # unigrams 3, 4, 5 and bigrams (3,4), (4,5) occur in both texts
    assert set(first) <= set(second)
    # order matters: (4, 3) is not (3, 4)
    assert ngram_rows([4, 3], 2, 10_007)[2] != ngram_rows([3, 4], 2, 10_007)[2]


def test_codes_stay_in_int64_for_long_orders_and_large_vocabularies() -> None:
    tokens = torch.full((2, 12), 49_999, dtype=torch.int64)
    rows = ngram_buckets_of(tokens, torch.tensor([12, 7]), 5, 1 << 20, 50_000)
    assert int(rows.min()) >= 0 and int(rows.max()) <= 1 << 20
    assert (rows[0] > 0).sum() == 12 + 11 + 10 + 9 + 8


def test_the_bag_is_the_mean_of_its_rows_and_ignores_padding() -> None:
    bag = NgramBag(VOCAB, order=2, buckets=101, dim=4)
    tokens, lengths = padded([[5, 6, 7], [8]])
    wider, _ = padded([[5, 6, 7], [8]], width=9)
    out = bag(tokens, lengths)
    rows = ngram_buckets_of(tokens, lengths, 2, 101, VOCAB)
    expected = bag.table.weight[rows[0][rows[0] > 0]].mean(dim=0)
    assert torch.allclose(out[0], expected, atol=1e-6)
    assert torch.allclose(bag(wider, lengths), out, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_classifier_with_ngrams_is_padding_invariant_and_trains_the_table(cell: str) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(VOCAB, 3, 8, cell, 8, ngram_order=2, ngram_buckets=97, ngram_dim=5)
    model.eval()
    tokens, lengths = padded([[5, 6, 7, 8], [9, 10]])
    wider, _ = padded([[5, 6, 7, 8], [9, 10]], width=11)
    logits = model(tokens, lengths)
    assert logits.shape == (2, 3)
    assert torch.allclose(model(wider, lengths), logits, atol=1e-6)
    logits.sum().backward()
    gradient = model.ngram_bag.table.weight.grad
    assert gradient[0].abs().sum() == 0  # the "no n-gram" row never learns
    assert gradient.abs().sum() > 0


def test_config_builds_the_bag_and_the_optimizer_neither_decays_nor_skips_it() -> None:
    config = load_config(None, ["model.ngram_order=2", "model.ngram_buckets=64",
                                "model.ngram_dim=4", "model.embedding_dim=8",
                                "model.pretrained_embeddings=", "model.hidden_size=8"])
    model = build_model(config.model, VOCAB, 4)
    assert model.ngram_bag is not None and model.ngram_bag.table.weight.shape == (65, 4)
    assert model.classifier.in_features == 2 * 8 + 4
    optimizer = build_optimizer(config.optim, model)
    groups = {id(p): group["weight_decay"] for group in optimizer.param_groups
              for p in group["params"]}
    assert groups[id(model.ngram_bag.table.weight)] == 0.0
    assert groups[id(model.embedding.weight)] == 0.0
    assert groups[id(model.classifier.weight)] == config.optim.weight_decay
    assert len(groups) == len(list(model.parameters()))
    assert build_model(Config().model, VOCAB, 4).ngram_bag is not None  # on by default
    assert build_model(load_config(None, ["model.ngram_order=0"]).model, VOCAB, 4
                       ).ngram_bag is None


def test_sparse_embedding_makes_both_tables_sparse() -> None:
    config = load_config(None, ["model.ngram_order=2", "model.ngram_buckets=64",
                                "model.embedding_dim=8", "model.pretrained_embeddings=",
                                "model.hidden_size=8"])
    model = build_model(config.model, VOCAB, 4, sparse_embedding=True)
    optimizer = build_optimizer(config.optim, model)
    assert isinstance(optimizer, OptimizerGroup)
    sparse_params = {id(p) for p in optimizer.optimizers[1].param_groups[0]["params"]}
    assert sparse_params == {id(model.embedding.weight), id(model.ngram_bag.table.weight)}


def test_ngram_dropout_only_acts_while_training_and_never_divides_by_zero() -> None:
    torch.manual_seed(0)
    bag = NgramBag(VOCAB, order=2, buckets=101, dim=4, dropout=0.9)
    tokens, lengths = padded([[5, 6, 7, 8, 9, 10], [11]])
    bag.eval()
    reference = bag(tokens, lengths)
    assert torch.equal(bag(tokens, lengths), reference)  # eval: every n-gram, every time
    bag.train()
    draws = torch.stack([bag(tokens, lengths) for _ in range(20)])
    assert torch.isfinite(draws).all()
    assert not torch.allclose(draws[0], draws[1])  # training: a different subset each time
    assert (draws[:, 1] == 0).all(dim=1).any()  # a one-word text can lose its only n-gram


def test_configs_saved_before_the_bag_existed_load_without_it() -> None:
    saved = Config().to_dict()
    del saved["model"]["ngram_order"]  # as rnnclf wrote configs before the n-gram bag
    del saved["optim"]["sparse_embedding"]
    config = from_saved_dict(saved, "old.pt")
    assert config.model.ngram_order == 0 and config.optim.sparse_embedding is False
    current = Config().to_dict()
    current["model"]["ngram_order"] = 3
    assert from_saved_dict(current, "new.pt").model.ngram_order == 3  # saved values win


def test_table_rows_shrink_to_the_n_gram_positions_of_the_training_texts() -> None:
    lengths = torch.tensor([5, 1, 300])
    # max_length 10 keeps 5 + 1 + 10 unigram and 4 + 0 + 9 bigram positions
    assert ngram_table_rows(1 << 18, 2, lengths, max_length=10) == 16 + 13
    assert ngram_table_rows(20, 2, lengths, max_length=10) == 20  # the request when smaller


def test_a_small_training_set_saves_its_smaller_table_and_reloads(tmp_path: Path) -> None:
    from agnews_support import make_keyword_agnews
    from tiny_support import tiny_config

    from rnnclf.runs.checkpoint import load_checkpoint, load_model
    from rnnclf.training.trainer import fit

    config = tiny_config(make_keyword_agnews(tmp_path / "data"), tmp_path / "runs")
    config.train.epochs = 1
    messages: list[str] = []
    fit(config, log=lambda *parts: messages.append(" ".join(map(str, parts))))
    best = load_checkpoint(tmp_path / "runs" / "tiny" / "best.pt")
    assert "optimizer_state" not in best  # only last.pt carries what --resume needs
    assert "optimizer_state" in load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")
    saved = best["config"]["model"]
    assert 0 < saved["ngram_buckets"] < Config().model.ngram_buckets
    assert any("n-gram table" in message for message in messages)
    model = load_model(tmp_path / "runs" / "tiny" / "best.pt").model
    assert model.ngram_bag.table.weight.shape[0] == saved["ngram_buckets"] + 1
