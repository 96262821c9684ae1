"""`data.dataset: hf`: a Hugging Face `datasets` dataset (the optional `hf` extra).

Three places a split can come from, in this order:
- `data.hf_name` names a folder written by `save_to_disk` (relative to data.dir, else the current
  folder): `load_from_disk`; a DatasetDict gives the split named by data.hf_train_split /
  data.hf_test_split, a single Dataset is the training set (eval takes one with --data);
- `data.hf_name` is a Hub name (`owner/name`) with an optional `data.hf_config`, or a folder of
  data files: `load_dataset`, which downloads a Hub dataset into (or, with HF_DATASETS_OFFLINE=1,
  reads only from) the Hugging Face cache;
- `data.hf_name` is empty: data.train_file / data.test_file in data.dir (.csv, .json, .jsonl or
  .parquet), read by datasets' own builders.
Columns are chosen as for csv. A ClassLabel label column supplies the class names (its integer
labels stand for those names); other label columns hold names or whole numbers, as in csv.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from rnnclf.config.schema import DataConfig
from rnnclf.data.arrow_rows import check_columns, labelled_texts
from rnnclf.data.sources import SplitSource, resolve_data_dir
from rnnclf.data.tabular import BadRows, LabelledText, split_fields
from rnnclf.errors import RnnclfError

INSTALL_HINT = "pip install 'rnnclf[hf]'"
BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _datasets() -> ModuleType:
    try:
        import datasets
    except ImportError:
        raise RnnclfError(f"data.dataset=hf needs the hf extra: {INSTALL_HINT}") from None
    return datasets


@contextlib.contextmanager
def _quiet(datasets: ModuleType) -> Iterator[None]:
    """No progress bars from datasets while rnnclf loads; put back as they were."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _pick_split(loaded: Any, split: str, where: str, key: str, single_ok: bool) -> Any:
    """The `split` of a DatasetDict; a single Dataset as it is, where it may stand for any split
    (not for the test split: that would evaluate on the training rows)."""
    if not hasattr(loaded, "keys"):
        if not single_ok:
            raise RnnclfError(f"{where} holds one Dataset without splits, the training set; "
                              "evaluate with `rnnclf eval --data FOLDER` on another set, or save "
                              "a DatasetDict with a test split")
        return loaded
    if split not in loaded:
        shown = ", ".join(loaded.keys())
        raise RnnclfError(f"{key}: split {split!r} is not in {where} (splits: {shown}); set "
                          f"{key} to one of them")
    return loaded[split]


def _from_disk(folder: Path, split: str, key: str, single_ok: bool = True) -> SplitSource:
    datasets = _datasets()
    try:
        with _quiet(datasets):
            loaded = datasets.load_from_disk(str(folder))
    except Exception as error:  # datasets raises many kinds; the user needs its message
        raise RnnclfError(f"cannot load {folder} with datasets.load_from_disk "
                          f"({_first_line(error)}); give a folder written by save_to_disk"
                          ) from None
    dataset = _pick_split(loaded, split, str(folder), key, single_ok)
    where = f"{folder}[{split}]" if hasattr(loaded, "keys") else str(folder)
    return SplitSource(where, folder, dataset)


def _from_hub(name: str, config: DataConfig, split: str) -> SplitSource:
    """`load_dataset(name, data.hf_config, split=...)`: a Hub name, or a folder of data files."""
    datasets = _datasets()
    where = name + (f"/{config.hf_config}" if config.hf_config else "") + f"[{split}]"
    try:
        with _quiet(datasets):
            dataset = datasets.load_dataset(name, config.hf_config or None, split=split)
    except Exception as error:  # offline, unknown name/config/split: one line with its reason
        raise RnnclfError(f"cannot load the Hugging Face dataset {where} ({_first_line(error)}); "
                          "check data.hf_name, data.hf_config and the split (with "
                          "HF_DATASETS_OFFLINE=1 only datasets already cached load)") from None
    return SplitSource(where, None, dataset)


def _from_file(path: Path) -> SplitSource:
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise RnnclfError(f"{path}: datasets reads .csv, .json, .jsonl or .parquet data files; "
                          "set data.train_file / data.test_file to such a file, or data.hf_name")
    if not path.is_file():
        what = "is not a file" if path.exists() else "is missing"
        raise RnnclfError(f"{path} {what}; set data.dir / data.train_file / data.test_file, or "
                          "data.hf_name")
    datasets = _datasets()
    try:
        with _quiet(datasets):
            dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as error:  # a file the builder cannot parse
        raise RnnclfError(f"cannot read {path} with datasets' {builder} builder "
                          f"({_first_line(error)}); fix the file") from None
    return SplitSource(str(path), path, dataset)


def _looks_like_path(name: str) -> bool:
    """A Hub name is `name` or `owner/name`; anything else the user meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _saved_to_disk(folder: Path) -> bool:
    """What save_to_disk writes: dataset_dict.json (a DatasetDict) or state.json (a Dataset)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def locate(config: DataConfig, role: str, path: Path | None = None) -> SplitSource:
    """The loaded `role` ("train" or "test") split; `path`: a file or folder given instead."""
    split = config.hf_train_split if role == "train" else config.hf_test_split
    key = f"data.hf_{role}_split"
    if path is not None:
        return _from_disk(path, split, key) if _saved_to_disk(path) else _from_file(path)
    if not config.hf_name:
        name = config.train_file if role == "train" else config.test_file
        return _from_file(resolve_data_dir(config) / name)
    folder = resolve_data_dir(config) / Path(config.hf_name).expanduser()
    if folder.is_dir():
        if _saved_to_disk(folder):
            return _from_disk(folder, split, key, single_ok=role == "train")
        return _from_hub(str(folder), config, split)  # a folder of data files, read by datasets
    if _looks_like_path(config.hf_name):
        raise RnnclfError(f"data.hf_name: folder {folder} does not exist; give a save_to_disk "
                          "folder or a Hub dataset name (owner/name)")
    return _from_hub(config.hf_name, config, split)


def digest(source: SplitSource) -> str:
    """Changes when the split's rows do: datasets' own fingerprint of the loaded split."""
    return f"{source.where}:{source.dataset._fingerprint}"


def read_labelled_texts(source: SplitSource, config: DataConfig
                        ) -> tuple[list[LabelledText], list[str], list[str] | None]:
    """Usable (label, text) rows, skipped-row notes, and the ClassLabel names if there are any."""
    datasets = _datasets()
    dataset = source.dataset
    text_names = split_fields(config.text_fields)
    label_name = config.label_field.strip()
    check_columns(dataset.features.arrow_schema, text_names, label_name, source.where)
    feature = dataset.features[label_name]
    class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    columns = dataset.select_columns(list(dict.fromkeys([*text_names, label_name])))
    table = columns.with_format("arrow")[:]  # respects an indices mapping (select, shuffle)
    bad = BadRows(source.where, config.on_bad_row, unit="row")
    items = labelled_texts(table, text_names, label_name, bad, class_names)
    if not items:
        raise RnnclfError(f"{source.where} holds no usable rows; check data.text_fields and "
                          "data.label_field")
    return items, bad.notes, class_names
