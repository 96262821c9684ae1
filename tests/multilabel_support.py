"""A generated multi-label set whose right answers are known, and a tiny config to learn it.

Label i is on exactly when its keyword occurs in the text; filler words carry nothing. Imported
by bare name (`from multilabel_support import ...`), like tiny_support.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rnnclf.config.schema import Config

KEYWORDS = {"alpha": "apple", "beta": "banana", "gamma": "cherry"}
FILLER = ["the", "a", "today", "report", "new", "market", "people", "said", "after", "long",
          "city", "plan", "team", "week", "story"]


def labelled_texts(count: int, seed: int) -> list[tuple[list[str], str]]:
    """(labels, text) pairs: each label on with probability 0.4, its keyword then in the text."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        labels = [name for name in KEYWORDS if rng.random() < 0.4]
        words = rng.choices(FILLER, k=rng.randint(3, 9)) + [KEYWORDS[name] for name in labels]
        rng.shuffle(words)
        rows.append((labels, " ".join(words)))
    return rows


def write_multilabel_csv(path: Path, rows: list[tuple[list[str], str]],
                         separator: str = "|") -> Path:
    lines = ["text,tags"] + [f"{text},{separator.join(labels)}" for labels, text in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_multilabel_jsonl(path: Path, rows: list[tuple[list[str], str]]) -> Path:
    path.write_text("".join(json.dumps({"text": text, "label": labels}) + "\n"
                            for labels, text in rows), encoding="utf-8")
    return path


def multilabel_config(data_dir: Path, runs_dir: Path, dataset: str = "csv",
                      name: str = "multi") -> Config:
    """A small model that learns the keyword rule in a few seconds."""
    config = Config()
    config.data.dataset = dataset
    config.data.dir = str(data_dir)
    config.data.train_file = f"train.{dataset}"
    config.data.test_file = f"test.{dataset}"
    config.data.multi_label = True
    config.data.label_field = "tags" if dataset == "csv" else "label"
    config.data.clean = False
    config.data.min_freq = 1
    config.data.val_fraction = 0.2
    config.data.cache_dir = str(runs_dir / "cache")
    config.model.embedding_dim = config.model.hidden_size = 16
    config.model.pretrained_embeddings = ""
    config.model.ngram_buckets = 4096
    config.train.batch_size = 16
    config.train.epochs = 6
    config.optim.lr = 0.02
    config.train.early_stopping_patience = 0
    config.train.progress = False
    config.train.num_threads = 1
    config.train.runs_dir = str(runs_dir)
    config.train.name = name
    return config


def write_set(data_dir: Path, dataset: str = "csv", train_rows: int = 400,
              test_rows: int = 150) -> Path:
    """train.<dataset> and test.<dataset> in data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    write = write_multilabel_csv if dataset == "csv" else write_multilabel_jsonl
    write(data_dir / f"train.{dataset}", labelled_texts(train_rows, seed=1))
    write(data_dir / f"test.{dataset}", labelled_texts(test_rows, seed=2))
    return data_dir
