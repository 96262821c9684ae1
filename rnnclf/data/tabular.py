"""Your own data: rows of a CSV or JSON-lines file -> (label, text) Rows, labels found by name.

Which columns hold the text and the label comes from `data.text_fields` (one or several,
comma-separated, joined by a space) and `data.label_field`. A CSV with `data.header: true` names
its columns in the first row; without a header, columns are 0-based indices. JSON-lines files
hold one object per line, so `{"text": ..., "label": ...}` works with the defaults. Labels may be
names or integers; the training file's distinct labels, sorted, become the class names.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnclf.config.schema import DataConfig
from rnnclf.data import multilabel
from rnnclf.data.agnews import MAX_FIELD_CHARS, Row
from rnnclf.errors import RnnclfError

_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class LabelledText:
    label: str  # the label as written in the file (integers as their decimal text)
    text: str  # the text fields joined by a space
    line: int  # where the row starts in the file, for error messages
    label_set: tuple[str, ...] = ()  # data.multi_label: the row's labels (label is the field)


def split_fields(text_fields: str) -> list[str]:
    """'title, body' -> ['title', 'body']."""
    return [name.strip() for name in text_fields.split(",") if name.strip()]


def sort_labels(labels: set[str]) -> list[str]:
    """Integer labels in numeric order ("2" before "10"), any other labels alphabetically."""
    if labels and all(_INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


class BadRows:
    """Collects or raises bad-row problems, as `data.on_bad_row` says."""

    def __init__(self, path: Path | str, on_bad_row: str, unit: str = "line") -> None:
        self.path = path
        self.skip = on_bad_row == "skip"
        self.unit = unit  # "line" of a text file, "row" of a table (Parquet, Hugging Face)
        self.notes: list[str] = []

    def __call__(self, line: int, problem: str) -> None:
        message = f"{self.path}, {self.unit} {line}: {problem}"
        if not self.skip:
            raise RnnclfError(f"{message}; fix the row, or set data.on_bad_row=skip to skip "
                              "such rows")
        self.notes.append(message)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise RnnclfError(f"cannot read {path}: {error.strerror}") from None
    # surrogateescape keeps undecodable bytes visible per row instead of failing the whole file.
    return raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def csv_records(reader: Any, on_error: Callable[[int, str], None]
                ) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank record of a `csv.reader`. A record that breaks
    the CSV rules (an unclosed quote, a field over MAX_FIELD_CHARS) goes to `on_error` with its
    line and the problem; `on_error` raises, or returns to go on with the next record."""
    old_limit = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                on_error(reader.line_num, str(error))
                continue
            if fields:
                yield reader.line_num, fields
    finally:
        csv.field_size_limit(old_limit)


def _training_csv_records(path: Path, bad: BadRows) -> Iterator[tuple[int, list[str]]]:
    """The records of a training/eval CSV; broken quoting is a bad row."""
    def broken(line: int, problem: str) -> None:
        if "field larger" in problem:
            problem = f"a field is longer than {MAX_FIELD_CHARS:,} characters (an unclosed quote?)"
        bad(line, problem)

    # A generator, so the file is read on the first record, as the caller expects.
    yield from csv_records(csv.reader(io.StringIO(_read_text(path), newline="")), broken)


def _column_indices(path: Path, header: list[str] | None, names: list[str], key: str
                    ) -> list[int]:
    """Column positions of `names`: header names, or 0-based indices when there is no header."""
    indices = []
    for name in names:
        if header is not None:
            if name not in header:
                shown = ", ".join(header[:20])
                raise RnnclfError(f"{key}: column {name!r} is not in the header of {path} "
                                  f"(columns: {shown}); set {key} to one of them")
            indices.append(header.index(name))
        else:
            if not name.isdigit():
                raise RnnclfError(f"{key}: {name!r} is not a column number; with data.header="
                                  "false give 0-based column numbers (e.g. 0 or 1,2)")
            indices.append(int(name))
    return indices


def _read_csv(path: Path, config: DataConfig, bad: BadRows) -> list[LabelledText]:
    text_names = split_fields(config.text_fields)
    records = _training_csv_records(path, bad)
    header: list[str] | None = None
    if config.header:
        first = next(records, None)
        if first is None:
            raise RnnclfError(f"{path} is empty; expected a header row, then data rows")
        header = [name.strip() for name in first[1]]
    text_columns = _column_indices(path, header, text_names, "data.text_fields")
    label_column = _column_indices(path, header, [config.label_field.strip()],
                                   "data.label_field")[0]
    needed = max([label_column, *text_columns]) + 1
    items: list[LabelledText] = []
    for line, fields in records:
        if header is not None and len(fields) != len(header):
            bad(line, f"expected {len(header)} columns as in the header, found {len(fields)}")
            continue
        if len(fields) < needed:
            bad(line, f"expected at least {needed} columns, found {len(fields)}")
            continue
        label = fields[label_column].strip()
        text = " ".join(fields[i] for i in text_columns).strip()
        label_set = multilabel.split_labels(label, config.label_separator) \
            if config.multi_label else ()
        if check_row(line, label, text, bad, config.multi_label):
            items.append(LabelledText(label, text, line, label_set))
    return items


def json_label(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    return None


def _read_jsonl(path: Path, config: DataConfig, bad: BadRows) -> list[LabelledText]:
    text_names = split_fields(config.text_fields)
    label_name = config.label_field.strip()
    items: list[LabelledText] = []
    for line, raw_line in enumerate(_read_text(path).splitlines(), 1):
        if not raw_line.strip():
            continue
        try:
            record = json.loads(raw_line)
        except json.JSONDecodeError as error:
            bad(line, f"not valid JSON ({error.msg})")
            continue
        if not isinstance(record, dict):
            bad(line, f"expected a JSON object, found {type(record).__name__}")
            continue
        missing = [name for name in [*text_names, label_name] if record.get(name) is None]
        if missing:
            bad(line, f"no {', '.join(repr(name) for name in missing)} field (set "
                "data.text_fields / data.label_field to the keys your file uses)")
            continue
        texts = [record[name] for name in text_names]
        if not all(isinstance(text, (str, int, float)) and not isinstance(text, bool)
                   for text in texts):
            bad(line, "a text field is not a string")
            continue
        label_set: tuple[str, ...] | None = ()
        if config.multi_label:
            label_set = multilabel.json_labels(record[label_name], config.label_separator)
            label = None if label_set is None else config.label_separator.join(label_set)
        else:
            label = json_label(record[label_name])
        if label_set is None:
            bad(line, f"label {str(record[label_name])[:60]!r} is neither a list of names, a "
                "name nor a whole number")
            continue
        if label is None:
            bad(line, f"label {record[label_name]!r} is neither a name nor a whole number")
            continue
        text = " ".join(str(text) for text in texts).strip()
        if check_row(line, label, text, bad, config.multi_label):
            items.append(LabelledText(label, text, line, label_set))
    return items


def check_row(line: int, label: str, text: str, bad: BadRows, no_label_ok: bool = False) -> bool:
    """A usable row; a multi-label row (`no_label_ok`) may have no label."""
    if not label and not no_label_ok:
        bad(line, "the label is empty")
    elif not text:
        bad(line, "the text is empty")
    elif not (_valid_utf8(text) and _valid_utf8(label)):
        bad(line, "the row is not valid UTF-8")
    else:
        return True
    return False


def read_labelled_texts(path: Path, config: DataConfig) -> tuple[list[LabelledText], list[str]]:
    """Every usable (label, text) of a csv/jsonl file, and notes on the rows skipped."""
    if config.dataset not in ("csv", "jsonl"):
        raise ValueError(f"not a tabular dataset: {config.dataset!r}")
    bad = BadRows(path, config.on_bad_row)
    reader = _read_csv if config.dataset == "csv" else _read_jsonl
    items = reader(path, config, bad)
    if not items:
        raise RnnclfError(f"{path} holds no usable rows; check data.dataset, data.text_fields, "
                          "data.label_field and data.header")
    return items, bad.notes


def to_rows(items: list[LabelledText], label_names: list[str], path: Path | str,
            on_bad_row: str, unit: str = "line") -> tuple[list[Row], list[str]]:
    """Map labels to class indices; a label the model was not trained on is a bad row."""
    index = {name: i for i, name in enumerate(label_names)}
    bad = BadRows(path, on_bad_row, unit)
    rows = []
    for item in items:
        if item.label not in index:
            shown = ", ".join(label_names[:10])
            bad(item.line, f"label {item.label[:40]!r} is not one of the trained labels "
                f"({shown})")
            continue
        rows.append(Row(index[item.label], item.text))
    if not rows:
        raise RnnclfError(f"{path} holds no rows with a known label ({', '.join(label_names)})")
    return rows, bad.notes


def training_rows(items: list[LabelledText], path: Path | str, unit: str = "line",
                  label_names: list[str] | None = None) -> tuple[list[Row], list[str]]:
    """Rows and label names of a training split: `label_names` when the data names its classes
    (a Hugging Face ClassLabel), else its distinct labels, sorted."""
    if label_names is None:
        label_names = sort_labels({item.label for item in items})
    if len(label_names) < 2:
        raise RnnclfError(f"{path} has only one label ({label_names[0]!r}); a classifier needs "
                          "at least two (check data.label_field)")
    rows, _ = to_rows(items, label_names, path, "error", unit)
    return rows, label_names


def read_training_rows(path: Path, config: DataConfig
                       ) -> tuple[list[Row] | list[multilabel.MultiLabelRow], list[str],
                                  list[str]]:
    """Rows, skipped-row notes and the label names (the file's distinct labels, sorted)."""
    items, skipped = read_labelled_texts(path, config)
    if config.multi_label:
        label_names = multilabel.label_names_of([item.label_set for item in items], path,
                                                sort_labels)
        return multilabel.to_rows(items, label_names, BadRows(path, "error")), skipped, \
            label_names
    rows, label_names = training_rows(items, path)
    return rows, skipped, label_names


def read_eval_rows(path: Path, config: DataConfig, label_names: list[str]
                   ) -> tuple[list[Row] | list[multilabel.MultiLabelRow], list[str]]:
    """Rows labelled with a trained model's label names, and skipped-row notes."""
    items, skipped = read_labelled_texts(path, config)
    if config.multi_label:
        bad = BadRows(path, config.on_bad_row)
        rows = multilabel.to_rows(items, label_names, bad)
        if not rows:
            raise RnnclfError(f"{path} holds no rows with known labels ({', '.join(label_names)})")
        return rows, skipped + bad.notes
    rows, unknown = to_rows(items, label_names, path, config.on_bad_row)
    return rows, skipped + unknown
