"""Rows -> tokens -> ids, once: numericalized splits cached on disk, keyed by their inputs."""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path

import torch

from rnnclf.config.schema import DataConfig
from rnnclf.data import agnews, multilabel
from rnnclf.data.agnews import Row
from rnnclf.data.multilabel import MultiLabelRow, multi_hot
from rnnclf.data.sources import (  # noqa: F401 (locate_file, resolve_data_dir: re-exported)
    SplitSource,
    locate_file,
    locate_split,
    read_eval_rows,
    read_training_rows,
    resolve_data_dir,
    source_digest,
)
from rnnclf.data.text import UNK, UNK_INDEX, Vocab, clean_ag_news, tokenize
from rnnclf.errors import RnnclfError
from rnnclf.runs.atomic import atomic_torch_save

# Bump when tokenizing, cleaning or the cache layout changes, so old caches are not reused.
PREPROCESS_VERSION = 2


@dataclass
class EncodedSplit:
    """Texts as one flat id tensor: text i is tokens[offsets[i]:offsets[i] + lengths[i]]."""

    tokens: torch.Tensor  # (total_tokens,) int32
    offsets: torch.Tensor  # (N,) int64
    lengths: torch.Tensor  # (N,) int64, every length >= 1
    labels: torch.Tensor  # (N,) int64; with data.multi_label (N, C) float32 multi-hot

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> EncodedSplit:
        """Rows at `indices`; shares the flat token tensor."""
        return EncodedSplit(self.tokens, self.offsets[indices], self.lengths[indices],
                            self.labels[indices])

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens, "offsets": self.offsets, "lengths": self.lengths,
                "labels": self.labels}


@dataclass
class TrainingData:
    vocab: Vocab
    label_names: list[str]
    train: EncodedSplit
    val: EncodedSplit
    skipped_rows: int


def default_cache_dir() -> Path:
    return agnews.user_cache_dir("RNNCLF_CACHE_DIR", "cache")


def text_of(raw_text: str, clean: bool) -> list[str]:
    """The tokens the model sees for one raw text."""
    return tokenize(clean_ag_news(raw_text) if clean else raw_text)


def encode_texts(token_lists: list[list[str]], labels: list[int] | torch.Tensor, vocab: Vocab
                 ) -> EncodedSplit:
    """Numericalize; an empty token list becomes a single <unk> so every length is >= 1."""
    # One C-level pass (map over the chained tokens into an int32 array) instead of a Python
    # loop per text: several times faster on AG News (docs/benchmarks.md).
    flat = chain.from_iterable(tokens or (UNK,) for tokens in token_lists)
    ids = array("i", map(vocab.stoi.get, flat, repeat(UNK_INDEX)))
    lengths = [len(tokens) or 1 for tokens in token_lists]
    lengths_tensor = torch.tensor(lengths, dtype=torch.int64)
    offsets = torch.zeros_like(lengths_tensor)
    if len(lengths) > 1:
        offsets[1:] = torch.cumsum(lengths_tensor, 0)[:-1]
    tokens = torch.frombuffer(ids, dtype=torch.int32).clone() if ids else torch.zeros(
        0, dtype=torch.int32)
    if not isinstance(labels, torch.Tensor):
        labels = torch.tensor(labels, dtype=torch.int64)
    return EncodedSplit(tokens, offsets, lengths_tensor, labels)


def _cache_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _load_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # a torn or foreign cache file is rebuilt, never trusted
        return None


def _save_cache(path: Path, payload: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(payload, path)
    except (OSError, RnnclfError):
        pass  # the cache only saves time; a read-only cache folder must not stop a run


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded train/validation split of n rows (sorted indices)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise RnnclfError(f"only {n} training rows; too few to carve a validation split")
    return order[n_val:].sort().values, order[:n_val].sort().values


def _format_key(config: DataConfig) -> tuple[object, ...]:
    """Cache-key parts for how rows are read (empty for AG News, so its old caches stay valid)."""
    if config.dataset == "ag_news":
        return ()
    if config.dataset == "hf":  # the split's name and ClassLabel are part of what is read
        return (config.dataset, config.text_fields, config.label_field, config.hf_name,
                config.hf_config, config.hf_train_split, config.hf_test_split)
    # Multi-label parts only when on, so single-label caches stay valid.
    multi = ("multi", config.label_separator) if config.multi_label else ()
    return (config.dataset, config.text_fields, config.label_field, config.header, *multi)


def _extra_words_key(extra_words: Sequence[str]) -> tuple[object, ...]:
    """Cache-key part for added vocabulary words (empty without any, so old caches stay valid)."""
    if not extra_words:
        return ()
    return ("extra", len(extra_words),
            hashlib.sha256("\n".join(extra_words).encode("utf-8")).hexdigest()[:16])


def label_targets(rows: list[Row] | list[MultiLabelRow], num_labels: int, multi_label: bool
                  ) -> list[int] | torch.Tensor:
    """Class indices (single-label), or (N, C) multi-hot rows (data.multi_label)."""
    if multi_label:
        return multi_hot(rows, num_labels)  # type: ignore[arg-type]
    return [row.label for row in rows]  # type: ignore[union-attr]


def prepare_training_data(config: DataConfig, cache_dir: Path | None = None,
                          extra_words: Sequence[str] = ()) -> TrainingData:
    """Read the training file, split off validation, build the vocabulary, numericalize; cached.

    `extra_words` (pretrained vectors' words, see model.pretrained_vocab) join the vocabulary
    after the training split's own tokens, in their order.
    """
    if config.multi_label:  # before any download is tried
        multilabel.check_config(config)
    train_source = locate_split(config, "train")
    cache_dir = cache_dir or (Path(config.cache_dir).expanduser() if config.cache_dir
                              else default_cache_dir())
    key = _cache_key(PREPROCESS_VERSION, "train", source_digest(train_source), config.clean,
                     config.val_fraction, config.split_seed, config.min_freq,
                     config.max_vocab_size, config.on_bad_row, *_format_key(config),
                     *_extra_words_key(extra_words))
    cache_path = cache_dir / f"train-{key}.pt"
    cached = _load_cache(cache_path)
    if cached is not None:
        try:
            return TrainingData(Vocab(cached["vocab"]), list(cached["label_names"]),
                                EncodedSplit(**cached["train"]), EncodedSplit(**cached["val"]),
                                int(cached["skipped_rows"]))
        except (KeyError, TypeError, ValueError):
            pass  # stale layout: rebuild below
    rows, skipped, label_names = read_training_rows(config, train_source)
    train_index, val_index = split_indices(len(rows), config.val_fraction, config.split_seed)
    token_lists = [text_of(row.text, config.clean) for row in rows]
    labels = label_targets(rows, len(label_names), config.multi_label)
    vocab = Vocab.build((token_lists[i] for i in train_index.tolist()), config.min_freq,
                        config.max_vocab_size)
    if extra_words:
        vocab = vocab.extended(extra_words)
    everything = encode_texts(token_lists, labels, vocab)
    data = TrainingData(vocab, label_names, everything.subset(train_index),
                        everything.subset(val_index), len(skipped))
    _save_cache(cache_path, {
        "vocab": vocab.itos, "label_names": data.label_names, "skipped_rows": len(skipped),
        "train": data.train.to_dict(), "val": data.val.to_dict(),
    })
    return data


def prepare_eval_split(config: DataConfig, vocab: Vocab, path: Path | SplitSource,
                       cache_dir: Path | None = None, label_names: list[str] | None = None
                       ) -> tuple[EncodedSplit, int]:
    """A file (or a located split) in the config's format, numericalized with a trained model's
    vocabulary (and, for own data, labelled with its `label_names`); cached."""
    source = path if isinstance(path, SplitSource) else locate_split(config, "test", path)
    cache_dir = cache_dir or (Path(config.cache_dir).expanduser() if config.cache_dir
                              else default_cache_dir())
    vocab_digest = hashlib.sha256("\n".join(vocab.itos).encode()).hexdigest()
    key = _cache_key(PREPROCESS_VERSION, "eval", source_digest(source), config.clean, vocab_digest,
                     config.on_bad_row, *_format_key(config),
                     *([label_names] if config.dataset != "ag_news" else []))
    cache_path = cache_dir / f"eval-{key}.pt"
    cached = _load_cache(cache_path)
    if cached is not None:
        try:
            return EncodedSplit(**cached["split"]), int(cached["skipped_rows"])
        except (KeyError, TypeError):
            pass
    rows, skipped = read_eval_rows(config, source, label_names)
    split = encode_texts([text_of(row.text, config.clean) for row in rows],
                         label_targets(rows, len(label_names or ()), config.multi_label), vocab)
    _save_cache(cache_path, {"split": split.to_dict(), "skipped_rows": len(skipped)})
    return split, len(skipped)
