"""prefetch: batches built on a background thread, in the same order, errors passed on."""

from __future__ import annotations

import threading

import pytest
import torch

from rnnclf.data.batches import epoch_batches
from rnnclf.data.dataset import encode_texts
from rnnclf.data.prefetch import prefetch
from rnnclf.data.text import Vocab


def test_prefetch_yields_the_same_batches_in_the_same_order() -> None:
    split = encode_texts([["a"] * n for n in [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5] * 9],
                         list(range(99)), Vocab(["<pad>", "<unk>", "a"]))
    plain = list(epoch_batches(split, 8, 6, seed=1, epoch=2))
    for depth in (0, 1, 3):
        fetched = list(prefetch(epoch_batches(split, 8, 6, seed=1, epoch=2), depth))
        assert len(fetched) == len(plain)
        for a, b in zip(plain, fetched):
            assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.lengths, b.lengths)


def test_prefetch_applies_prepare_and_raises_producer_errors() -> None:
    assert list(prefetch(range(5), 2, lambda x: x * 10)) == [0, 10, 20, 30, 40]

    def broken():
        yield 1
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        list(prefetch(broken(), 2))


def test_prefetch_stops_its_thread_when_the_consumer_leaves_early() -> None:
    before = threading.active_count()
    items = prefetch(iter(range(10_000)), 2)
    assert next(items) == 0
    items.close()
    assert threading.active_count() == before
