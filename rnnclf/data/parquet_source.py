"""`data.dataset: parquet`: a Parquet file read with pyarrow (the optional `parquet` extra).

Columns are chosen by name as for csv (`data.text_fields`, `data.label_field`); only those are
read. Labels are names or whole numbers, the distinct ones sorted become the class names.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from rnnclf.config.schema import DataConfig
from rnnclf.data.arrow_rows import check_columns, labelled_texts
from rnnclf.data.tabular import BadRows, LabelledText, split_fields
from rnnclf.errors import RnnclfError

INSTALL_HINT = "pip install 'rnnclf[parquet]'"


def _parquet() -> ModuleType:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise RnnclfError(f"data.dataset=parquet needs the parquet extra: {INSTALL_HINT}"
                          ) from None
    return parquet


def read_labelled_texts(path: Path, config: DataConfig) -> tuple[list[LabelledText], list[str]]:
    """Every usable (label, text) row of a Parquet file, and notes on the rows skipped."""
    parquet = _parquet()
    import pyarrow as pa

    text_names = split_fields(config.text_fields)
    label_name = config.label_field.strip()
    try:
        schema = parquet.read_schema(path)
        check_columns(schema, text_names, label_name, str(path))
        table = parquet.read_table(path, columns=list(dict.fromkeys([*text_names, label_name])))
    except (pa.ArrowException, OSError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RnnclfError(f"cannot read {path} as Parquet ({first_line}); check data.dataset "
                          "and the file") from None
    bad = BadRows(path, config.on_bad_row, unit="row")
    items = labelled_texts(table, text_names, label_name, bad)
    if not items:
        raise RnnclfError(f"{path} holds no usable rows; check data.text_fields and "
                          "data.label_field")
    return items, bad.notes
