"""`rnnclf predict --input/--output` with Parquet files, through pyarrow (the `parquet` extra).

Rows are read a record batch at a time and written one row group per chunk, so a file larger
than memory streams through as CSV does. Output columns keep the input's Arrow types; the
prediction columns are typed: a string and a float64, or lists of them for a multi-label model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

from tqdm.auto import tqdm

from rnnclf.errors import RnnclfError
from rnnclf.inference.files import Record, row_with_predictions

if TYPE_CHECKING:
    import pyarrow as pa

INSTALL_HINT = "pip install 'rnnclf[parquet]'"


def _pyarrow(path: Path, flag: str) -> tuple[ModuleType, ModuleType]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise RnnclfError(f"{flag} {path}: Parquet needs the parquet extra: {INSTALL_HINT}"
                          ) from None
    return pyarrow, pyarrow.parquet


def _unreadable(path: Path, error: Exception) -> RnnclfError:
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    return RnnclfError(f"cannot read --input {path} as Parquet ({first_line}); check the file")


def read_parquet_records(path: Path, bar: tqdm, batch_rows: int
                         ) -> tuple[list[str], pa.Schema, Iterator[Record]]:
    """The column names, the Arrow schema, and the rows as dicts (`line` is the 1-based row)."""
    arrow, parquet = _pyarrow(path, "--input")
    try:
        source = parquet.ParquetFile(path)
    except (arrow.ArrowException, OSError) as error:
        raise _unreadable(path, error) from None
    schema = source.schema_arrow
    return list(schema.names), schema, _rows(source, path, bar, batch_rows, arrow)


def _rows(source: Any, path: Path, bar: tqdm, batch_rows: int, arrow: ModuleType
          ) -> Iterator[Record]:
    total_rows = max(1, source.metadata.num_rows)
    bytes_per_row = path.stat().st_size / total_rows  # the bar counts the file's bytes
    number = 0
    with source:
        try:
            for batch in source.iter_batches(batch_size=batch_rows):
                for values in batch.to_pylist():
                    number += 1
                    yield Record(number, values)
                bar.update(batch.num_rows * bytes_per_row)
        except (arrow.ArrowException, OSError) as error:
            raise _unreadable(path, error) from None


class ParquetRowWriter:
    """Rows out to Parquet: the input's columns, then the prediction columns; one row group per
    `flush` (one chunk of predictions)."""

    kind = "parquet"

    def __init__(self, handle: IO[bytes], path: Path, columns: list[str] | None,
                 input_schema: pa.Schema | None, added: list[str], multi_label: bool) -> None:
        self.arrow, self.parquet = _pyarrow(path, "--output")
        self.handle, self.path = handle, path
        self.columns, self.input_schema, self.added = columns, input_schema, added
        label_type = self.arrow.string()
        number_type = self.arrow.float64()
        if multi_label:
            label_type, number_type = self.arrow.list_(label_type), self.arrow.list_(number_type)
        self.added_fields = [self.arrow.field(added[0], label_type),
                             self.arrow.field(added[1], number_type)]
        self.added_fields += [self.arrow.field(name, self.arrow.float64()) for name in added[2:]]
        self.rows: list[dict[str, Any]] = []
        self.writer: Any = None

    def write(self, record: Record, predicted: list[Any]) -> None:
        self.rows.append(row_with_predictions(record, self.columns, self.added, predicted))

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            self.writer = self.parquet.ParquetWriter(self.handle, self._schema())
        try:
            table = self.arrow.Table.from_pylist(self.rows, schema=self.writer.schema)
        except (self.arrow.ArrowInvalid, self.arrow.ArrowTypeError) as error:
            raise RnnclfError(f"--output {self.path}: a column's values change type between "
                              f"rows ({str(error).splitlines()[0]}); write .jsonl instead"
                              ) from None
        self.writer.write_table(table)
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()

    def _schema(self) -> pa.Schema:
        """The input's own schema where it has one (Parquet in), else the types of the first
        chunk's values (CSV columns are strings); a column empty there is read as text."""
        if self.input_schema is not None:
            inputs = list(self.input_schema)
        else:
            names = [name for name in self.rows[0] if name not in self.added]
            inferred = self.arrow.Table.from_pylist([{name: row.get(name) for name in names}
                                                     for row in self.rows]).schema
            inputs = [field.with_type(self.arrow.string())
                      if self.arrow.types.is_null(field.type) else field for field in inferred]
        return self.arrow.schema([*inputs, *self.added_fields])
