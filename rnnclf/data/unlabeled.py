"""Unlabeled text for `rnnclf pretrain` (pretrain.unlabeled_files): .txt with one text per line,
or .csv/.jsonl whose data.text_fields hold the text (joined by a space, as for training data)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rnnclf.config.schema import DataConfig
from rnnclf.data.tabular import split_fields
from rnnclf.errors import RnnclfError

FORMATS = (".txt", ".csv", ".jsonl")


def unlabeled_paths(files: str) -> list[Path]:
    """pretrain.unlabeled_files ('a.txt, b.csv') -> paths, each checked to exist."""
    paths = [Path(name.strip()).expanduser() for name in files.split(",") if name.strip()]
    for path in paths:
        if path.suffix.lower() not in FORMATS:
            raise RnnclfError(f"pretrain.unlabeled_files: {path} is not {', '.join(FORMATS)}; "
                              "give one text per line (.txt), or a .csv/.jsonl file")
        if not path.is_file():
            raise RnnclfError(f"pretrain.unlabeled_files: {path} does not exist; fix the path")
    return paths


def _decoded(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace").removeprefix("\ufeff")
    except OSError as error:
        raise RnnclfError(f"cannot read {path}: {error.strerror}") from None


def _csv_texts(path: Path, config: DataConfig) -> list[str]:
    rows = csv.reader(io.StringIO(_decoded(path), newline=""))
    fields = split_fields(config.text_fields)
    header = next(rows, []) if config.header else None
    if header is not None:
        missing = [name for name in fields if name not in header]
        if missing:
            raise RnnclfError(f"{path}: no column {missing[0]!r} (data.text_fields); its columns "
                              f"are {', '.join(header)}")
        columns = [header.index(name) for name in fields]
    else:
        columns = [int(name) for name in fields]
    return [" ".join(row[column] for column in columns if column < len(row)) for row in rows]


def _jsonl_texts(path: Path, config: DataConfig) -> list[str]:
    fields = split_fields(config.text_fields)
    texts = []
    for number, line in enumerate(_decoded(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise RnnclfError(f"{path}, line {number}: not valid JSON; fix or remove the "
                              "line") from None
        if not isinstance(record, dict):
            raise RnnclfError(f"{path}, line {number}: not a JSON object")
        texts.append(" ".join(str(record[name]) for name in fields if name in record))
    return texts


def read_unlabeled_texts(path: Path, config: DataConfig) -> list[str]:
    """The non-empty raw texts of one unlabeled file."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        texts = _decoded(path).splitlines()
    elif suffix == ".csv":
        texts = _csv_texts(path, config)
    else:
        texts = _jsonl_texts(path, config)
    return [text for text in texts if text.strip()]
