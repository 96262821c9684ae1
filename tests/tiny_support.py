"""A tiny training config and a tiny padded batch, for tests of the optimizers, precision and
the model's paths. Imported by bare name (`from tiny_support import ...`), like kernel_support."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import torch

from rnnclf.config.schema import Config


def tiny_config(data_dir: Path, runs_dir: Path, **optim: object) -> Config:
    """An 8-unit model trained 2 epochs on `data_dir` into runs_dir/tiny; `optim` sets optim.*."""
    config = Config()
    config.data.dir = str(data_dir)
    config.data.download = False
    config.model.embedding_dim = config.model.hidden_size = 8
    config.model.pretrained_embeddings = ""
    config.train.batch_size = 16
    config.train.epochs = 2
    config.train.progress = False
    config.train.num_threads = 1
    config.train.runs_dir = str(runs_dir)
    config.train.name = "tiny"
    for key, value in optim.items():
        setattr(config.optim, key, value)
    return config


def batch_of(vocab_size: int = 30) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, lengths, labels) of 6 rows, longest first, padded with 0 to 9 positions."""
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([9, 7, 7, 4, 2, 1])
    tokens = torch.randint(2, vocab_size, (6, 9), generator=generator)
    tokens[torch.arange(9).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return tokens, lengths, torch.tensor([0, 1, 2, 3, 0, 1])


def write_weather_csv(path: Path, rows: int) -> None:
    """A two-class csv (text,label) that a tiny model learns in an epoch or two."""
    rng = random.Random(0)
    words = {"a": ["sun", "hot", "dry"], "b": ["rain", "wet", "cold"]}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for index in range(rows):
            label = "ab"[index % 2]
            writer.writerow([" ".join(rng.choices(words[label], k=4)), label])
