"""Where a split's rows come from, per `data.dataset`, and how they are read.

ag_news, csv and jsonl read files (data/agnews.py, data/tabular.py); parquet reads a file with
pyarrow (data/parquet_source.py); hf loads a Hugging Face dataset (data/hf_source.py). Every
source gives the same (label, text) Rows, so the cache, vocabulary and validation split built
from them (data/dataset.py) do not depend on the source. The optional libraries are imported only
when their source is used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnclf.config.schema import DataConfig
from rnnclf.data import agnews, tabular
from rnnclf.data.agnews import Row
from rnnclf.errors import RnnclfError


@dataclass(frozen=True)
class SplitSource:
    """One split's rows: where they are, for messages and `data info`, and how to reach them."""

    where: str  # a path, or a Hub id with its config and split
    path: Path | None = None  # the file or save_to_disk folder, when on disk
    dataset: Any = None  # hf: the loaded datasets.Dataset


def resolve_data_dir(config: DataConfig) -> Path:
    """Absolute data folder: data.dir (relative to the current folder), else AG News' cache
    folder ($RNNCLF_DATA_DIR), or the current folder for own data."""
    if config.dir:
        return Path(config.dir).expanduser().resolve()
    if config.dataset == "ag_news":
        return agnews.default_data_dir().resolve()
    return Path.cwd().resolve()


def locate_file(config: DataConfig, file_name: str) -> Path:
    """Path of a data file; only AG News is ever downloaded."""
    data_dir = resolve_data_dir(config)
    if config.dataset == "ag_news":
        return agnews.locate(data_dir, file_name, config.download)
    path = data_dir / file_name
    if not path.is_file():
        what = "is not a file" if path.exists() else "is missing"
        raise RnnclfError(f"{path} {what}; set data.dir / data.train_file / data.test_file to "
                          f"your {config.dataset} file(s)")
    return path


def locate_split(config: DataConfig, role: str, path: Path | None = None) -> SplitSource:
    """The "train" or "test" split of the config's data; `path`: a file given instead."""
    if config.dataset == "hf":
        from rnnclf.data import hf_source

        return hf_source.locate(config, role, path)
    if path is None:
        path = locate_file(config, config.train_file if role == "train" else config.test_file)
    return SplitSource(str(path), path)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_digest(source: SplitSource) -> str:
    """Changes when the split's rows do (a cache-key part)."""
    if source.dataset is not None:
        from rnnclf.data import hf_source

        return hf_source.digest(source)
    assert source.path is not None
    return file_digest(source.path)


def _labelled_texts(config: DataConfig, source: SplitSource
                    ) -> tuple[list[tabular.LabelledText], list[str], list[str] | None, str]:
    """Own data's items, skipped notes, class names (if the data names them) and row unit."""
    if config.dataset == "hf":
        from rnnclf.data import hf_source

        return (*hf_source.read_labelled_texts(source, config), "row")
    assert source.path is not None
    if config.dataset == "parquet":
        from rnnclf.data import parquet_source

        return (*parquet_source.read_labelled_texts(source.path, config), None, "row")
    return (*tabular.read_labelled_texts(source.path, config), None, "line")


def read_training_rows(config: DataConfig, source: SplitSource
                       ) -> tuple[list[Row], list[str], list[str]]:
    """Rows, skipped-row notes and label names of a training split, from any source."""
    if config.dataset == "ag_news":
        assert source.path is not None
        rows, skipped = agnews.read_rows(source.path, config.on_bad_row)
        return rows, skipped, list(agnews.LABEL_NAMES)
    if config.multi_label:  # csv/jsonl only (multilabel.check_config)
        assert source.path is not None
        return tabular.read_training_rows(source.path, config)
    items, skipped, class_names, unit = _labelled_texts(config, source)
    rows, label_names = tabular.training_rows(items, source.where, unit, class_names)
    return rows, skipped, label_names


def read_eval_rows(config: DataConfig, source: SplitSource, label_names: list[str] | None
                   ) -> tuple[list[Row], list[str]]:
    """Rows of an evaluation split labelled with the trained model's label names."""
    if config.dataset == "ag_news":
        assert source.path is not None
        return agnews.read_rows(source.path, config.on_bad_row)
    if label_names is None:
        raise ValueError("own-data evaluation needs the trained model's label names")
    if config.multi_label:
        assert source.path is not None
        return tabular.read_eval_rows(source.path, config, label_names)
    items, skipped, _, unit = _labelled_texts(config, source)
    rows, unknown = tabular.to_rows(items, label_names, source.where, config.on_bad_row, unit)
    return rows, skipped + unknown
