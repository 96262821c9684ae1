"""The default model stays lean (issue 19): a BiGRU over GloVe 50-d with a small n-gram bag, whose
best.pt (fp32 weights, no optimizer state) stays under 20 MB even at the largest vocabulary."""

from __future__ import annotations

from pathlib import Path

import torch

from rnnclf.config import Config
from rnnclf.models.build import build_model
from rnnclf.models.classifier import count_parameters
from rnnclf.runs.checkpoint import save_checkpoint

MEGABYTE = 10**6


def test_default_is_a_bigru_with_a_small_ngram_bag() -> None:
    model = Config().model
    assert (model.cell, model.hidden_size, model.num_layers, model.bidirectional) == (
        "gru", 128, 1, True)
    assert model.pretrained_embeddings == "glove.6B.50d" and model.embedding_dim == 50
    assert model.ngram_order == 2
    assert model.ngram_buckets * model.ngram_dim <= 2**21  # was 2**18 x 64 = 2**24


def test_default_best_pt_stays_under_20_megabytes_at_the_largest_vocabulary(
        tmp_path: Path) -> None:
    config = Config()
    model = build_model(config.model, config.data.max_vocab_size, 4)
    assert count_parameters(model) < 5_000_000
    path = tmp_path / "best.pt"
    # What the trainer writes to best.pt: weights, config, vocabulary, labels; no optimizer.
    save_checkpoint(path, {"config": config.to_dict(), "model_state": model.state_dict(),
                           "vocab": [f"w{index}" for index in range(config.data.max_vocab_size)],
                           "label_names": ["a", "b", "c", "d"]})
    assert path.stat().st_size <= 20 * MEGABYTE
    assert all(tensor.dtype == torch.float32 for tensor in model.state_dict().values()
               if tensor.is_floating_point())
