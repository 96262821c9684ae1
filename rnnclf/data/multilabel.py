"""Multi-label rows (`data.multi_label`): label sets from one field, as multi-hot tensors.

A CSV field (or a JSONL string) holds the labels split by `data.label_separator` ("sports|
politics"); a JSONL field may also hold a JSON list (["sports", "politics"]). An empty field or
list is a row with no label: a negative for every label. The training split's distinct labels,
sorted, become the label names; a label the model was not trained on makes a row bad, as in
single-label data (`data.on_bad_row`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnclf.config.schema import DataConfig
from rnnclf.errors import RnnclfError


@dataclass(frozen=True)
class MultiLabelRow:
    labels: tuple[int, ...]  # 0-based indices of the row's labels (possibly none)
    text: str


def check_config(config: DataConfig) -> None:
    """Settings multi-label reading cannot work with."""
    if config.dataset == "ag_news":
        raise RnnclfError("data.multi_label needs your own data (data.dataset=csv or jsonl); "
                          "AG News has one label per row")
    if config.dataset not in ("csv", "jsonl"):
        raise RnnclfError(f"data.multi_label reads csv or jsonl files, not "
                          f"data.dataset={config.dataset}; write the data as csv/jsonl with the "
                          "labels in one field")
    if not config.label_separator:
        raise RnnclfError("data.label_separator is empty; set it to the text between labels, "
                          "e.g. data.label_separator='|'")


def split_labels(field: str, separator: str) -> tuple[str, ...]:
    """'a | b|a' -> ('a', 'b'): stripped, empty parts dropped, each label once, in order."""
    parts = (part.strip() for part in field.split(separator))
    return tuple(dict.fromkeys(part for part in parts if part))


def json_labels(value: Any, separator: str) -> tuple[str, ...] | None:
    """The labels of a JSONL label value: a list of names or whole numbers, or one string split
    by `separator`, or one whole number; None when it is none of these."""
    if isinstance(value, str):
        return split_labels(value, separator)
    items = value if isinstance(value, list) else [value]
    names = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            return None
        if isinstance(item, float):
            if not item.is_integer():
                return None
            item = int(item)
        names.append(str(item).strip())
    return tuple(dict.fromkeys(name for name in names if name))


def label_names_of(label_sets: Sequence[tuple[str, ...]], path: Path,
                   sort: Callable[[set[str]], list[str]]) -> list[str]:
    """The distinct labels of a training file, sorted; at least one must occur."""
    names = sort({label for labels in label_sets for label in labels})
    if not names:
        raise RnnclfError(f"{path} has no labels at all (every label field is empty); check "
                          "data.label_field and data.label_separator")
    return names


def to_rows(items: Sequence[Any], label_names: list[str],
            bad: Callable[[int, str], None]) -> list[MultiLabelRow]:
    """LabelledText items (with .label_set, .text, .line) -> rows of label indices; a label the
    model was not trained on goes to `bad` (which raises, or skips the row)."""
    index = {name: i for i, name in enumerate(label_names)}
    rows = []
    for item in items:
        unknown = [label for label in item.label_set if label not in index]
        if unknown:
            shown = ", ".join(label_names[:10])
            bad(item.line, f"label {unknown[0][:40]!r} is not one of the trained labels "
                f"({shown})")
            continue
        rows.append(MultiLabelRow(tuple(index[label] for label in item.label_set), item.text))
    return rows


def multi_hot(rows: Sequence[MultiLabelRow], num_labels: int) -> torch.Tensor:
    """(N, C) float32 targets: 1 where the row has the label."""
    targets = torch.zeros(len(rows), num_labels, dtype=torch.float32)
    for position, row in enumerate(rows):
        if row.labels:
            targets[position, list(row.labels)] = 1.0
    return targets
