"""`rnnclf data download` and `rnnclf data info`: get AG News ahead of time; describe a dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rnnclf.config.schema import DataConfig
from rnnclf.data import agnews
from rnnclf.data.dataset import (
    EncodedSplit,
    locate_split,
    prepare_eval_split,
    prepare_training_data,
    resolve_data_dir,
)
from rnnclf.data.download import file_md5
from rnnclf.data.text import UNK_INDEX
from rnnclf.errors import RnnclfError

PERCENTILES = (50, 90, 95, 99)


def download_ag_news(data_dir: str = "", mirror: str | None = None,
                     log: Callable[[str], None] = print) -> list[Path]:
    """Download train.csv and test.csv (or check the ones there) against AG News' MD5s."""
    folder = resolve_data_dir(DataConfig(dir=data_dir))
    paths = []
    for name, known in agnews.KNOWN_MD5.items():
        existed = (folder / name).is_file()
        path = agnews.locate(folder, name, download=True, mirror=mirror)
        digest = file_md5(path)
        if digest != known:
            raise RnnclfError(f"{path} is not the AG News {name} (MD5 {digest}, expected "
                              f"{known}); delete it and run `rnnclf data download` again")
        log(f"{'verified' if existed else 'downloaded'} {path} (MD5 ok)")
        paths.append(path)
    return paths


def split_info(split: EncodedSplit, label_names: list[str], max_length: int) -> dict[str, Any]:
    """Rows, label balance, length percentiles (tokens) and known-token share of one split."""
    if split.labels.dim() == 2:  # multi-label: rows carrying each label
        counts = split.labels.sum(0).long().tolist()
    else:
        counts = torch.bincount(split.labels, minlength=len(label_names)).tolist()
    lengths = split.lengths.double()
    quantiles = torch.quantile(lengths, torch.tensor([p / 100 for p in PERCENTILES],
                                                      dtype=torch.float64)).tolist()
    return {
        "rows": len(split),
        "labels": {name: count for name, count in zip(label_names, counts)},
        "length_tokens": {"mean": lengths.mean().item(), "max": int(lengths.max().item()),
                          **{f"p{p}": value for p, value in zip(PERCENTILES, quantiles)}},
        "truncated_share": (split.lengths > max_length).double().mean().item(),
        "vocab_coverage": (split.tokens != UNK_INDEX).double().mean().item(),
    }


def dataset_info(config: DataConfig, include_test: bool = True) -> dict[str, Any]:
    """What `rnnclf data info` prints, as data (JSON-ready)."""
    data = prepare_training_data(config)
    info: dict[str, Any] = {
        "dataset": config.dataset, "train_file": locate_split(config, "train").where,
        "vocab_size": len(data.vocab), "label_names": data.label_names,
        "skipped_rows": data.skipped_rows, "max_length": config.max_length,
        "splits": {"train": split_info(data.train, data.label_names, config.max_length),
                   "val": split_info(data.val, data.label_names, config.max_length)},
    }
    if include_test:
        try:
            test_source = locate_split(config, "test")
        except RnnclfError:
            info["test_file"] = None  # no test file (or split) is fine for a description
        else:
            test, skipped = prepare_eval_split(config, data.vocab, test_source,
                                               label_names=data.label_names)
            info["test_file"] = test_source.where
            info["splits"]["test"] = split_info(test, data.label_names, config.max_length)
            info["splits"]["test"]["skipped_rows"] = skipped
    return info


def format_info(info: dict[str, Any]) -> str:
    """A table for people."""
    splits = info["splits"]
    names = list(splits)
    width = max(16, *(len(label) + 4 for label in info["label_names"]))
    lines = [f"dataset {info['dataset']}: {info['train_file']}"
             + (f", test {info['test_file']}" if info.get("test_file") else ", no test file"),
             f"vocabulary {info['vocab_size']:,} (from the train split)"
             + (f", {info['skipped_rows']} bad rows skipped" if info["skipped_rows"] else ""),
             "", f"{'':<{width}}" + "".join(f"{name:>12}" for name in names)]

    def row(title: str, values: list[str]) -> None:
        lines.append(f"{title:<{width}}" + "".join(f"{value:>12}" for value in values))

    row("rows", [f"{splits[n]['rows']:,}" for n in names])
    for label in info["label_names"]:
        row(f"  {label}", [f"{splits[n]['labels'][label] / max(1, splits[n]['rows']):.1%}"
                           for n in names])
    for key in ("mean", *(f"p{p}" for p in PERCENTILES), "max"):
        row(f"tokens {key}", [f"{splits[n]['length_tokens'][key]:.0f}" for n in names])
    row(f"> {info['max_length']} tokens", [f"{splits[n]['truncated_share']:.2%}" for n in names])
    row("vocab coverage", [f"{splits[n]['vocab_coverage']:.2%}" for n in names])
    lines.append("(label rows: share of the split; vocab coverage: share of tokens the train "
                 "vocabulary knows)")
    return "\n".join(lines)
