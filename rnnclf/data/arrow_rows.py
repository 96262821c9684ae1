"""Columns of an Arrow table (a Parquet file, a Hugging Face dataset) -> (label, text) items.

Parquet files and Hugging Face datasets are both Arrow tables underneath, so both are checked and
read here: the text columns (`data.text_fields`, joined by a space) must hold strings, the label
column (`data.label_field`) strings or whole numbers. A null or empty value is a bad row, as in
csv/jsonl; rows are counted from 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rnnclf.data.tabular import BadRows, LabelledText, check_row, json_label
from rnnclf.errors import RnnclfError

if TYPE_CHECKING:
    import pyarrow as pa


def _is_text(kind: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):  # pandas' categorical columns
        return _is_text(kind.value_type)
    is_string_view = getattr(pa.types, "is_string_view", None)  # pyarrow >= 16
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or (is_string_view is not None and is_string_view(kind)))


def _is_label(kind: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return _is_label(kind.value_type)
    return bool(_is_text(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind))


def check_columns(schema: pa.Schema, text_names: list[str], label_name: str, where: str) -> None:
    """Every named column exists and holds text (or, for the label, text or numbers)."""
    columns = schema.names
    for key, names in (("data.text_fields", text_names), ("data.label_field", [label_name])):
        for name in names:
            if name not in columns:
                shown = ", ".join(columns[:20])
                raise RnnclfError(f"{key}: column {name!r} is not in {where} (columns: "
                                  f"{shown}); set {key} to one of them")
    for name in text_names:
        kind = schema.field(name).type
        if not _is_text(kind):
            raise RnnclfError(f"data.text_fields: column {name!r} of {where} holds {kind}, not "
                              "text; choose a column of strings")
    kind = schema.field(label_name).type
    if not _is_label(kind):
        raise RnnclfError(f"data.label_field: column {label_name!r} of {where} holds {kind}, "
                          "not a label; choose a column of names or whole numbers")


def _label_text(value: Any, class_names: list[str] | None) -> str | None:
    """A label as the name it stands for: a ClassLabel index maps to its name."""
    if class_names is not None:
        if isinstance(value, int) and 0 <= value < len(class_names):
            return class_names[value]
        return None
    return json_label(value)


def labelled_texts(table: pa.Table, text_names: list[str], label_name: str, bad: BadRows,
                   class_names: list[str] | None = None) -> list[LabelledText]:
    """Every usable row of `table` (already checked by check_columns) as a LabelledText.

    `class_names`: a ClassLabel's names, so the label column's integers become names.
    """
    texts = [table.column(name).to_pylist() for name in text_names]
    labels = table.column(label_name).to_pylist()
    items: list[LabelledText] = []
    for row, (label_value, *parts) in enumerate(zip(labels, *texts), 1):
        if label_value is None or any(part is None for part in parts):
            bad(row, "a text or label value is missing (null)")
            continue
        label = _label_text(label_value, class_names)
        if label is None:
            bad(row, f"label {label_value!r} is neither a name nor a whole number"
                if class_names is None else f"label {label_value!r} is not a class index")
            continue
        text = " ".join(parts).strip()
        if check_row(row, label, text, bad):
            items.append(LabelledText(label, text, row))
    return items
