"""`rnnclf predict --input FILE --output FILE`: classify every row of a CSV/JSON-lines/Parquet
file (Parquet: rnnclf/inference/parquet_files.py).

Rows stream through in chunks: each chunk is tokenized, sorted by length into large batches
(little padding), classified, and written in the input's order with the input's own columns
plus `predicted_label` and `probability` (and, on request, one probability column per class).
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from tqdm.auto import tqdm

from rnnclf.data.dataset import encode_texts, text_of
from rnnclf.data.tabular import csv_records, split_fields
from rnnclf.errors import RnnclfError
from rnnclf.inference.predictor import CHARS_PER_TOKEN_BOUND, Predictor
from rnnclf.inference.scoring import predict_split
from rnnclf.runs.atomic import atomic_open

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet"}
LABEL_COLUMN = "predicted_label"
PROBABILITY_COLUMN = "probability"


def file_format(path: Path, flag: str) -> str:
    """csv, tsv or jsonl, from the file name's ending."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise RnnclfError(f"{flag} {path}: cannot tell the format from {path.suffix or 'no'} "
                          f"ending; use one of {', '.join(FORMATS)}")
    return kind


@dataclass
class Record:
    line: int
    values: dict[str, Any] | list[str]  # a JSON object, a CSV row by header name, or by position


class _CountingLines:
    """Lines of a binary file as text, counting bytes for the progress bar."""

    def __init__(self, handle: IO[bytes], bar: tqdm) -> None:
        self.handle = handle
        self.bar = bar
        self.first = True

    def __iter__(self) -> Iterator[str]:
        for raw in self.handle:
            self.bar.update(len(raw))
            line = raw.decode("utf-8", errors="replace")
            if self.first:
                line = line.removeprefix("\ufeff")
                self.first = False
            yield line


def _read_records(path: Path, kind: str, header: bool, bar: tqdm, chunk_rows: int
                  ) -> tuple[list[str] | None, Any, Iterator[Record]]:
    """The column names (None for JSON lines and header-less CSV), the Arrow schema (Parquet
    only, else None), and the records."""
    if kind == "parquet":
        from rnnclf.inference.parquet_files import read_parquet_records
        return read_parquet_records(path, bar, chunk_rows)
    try:
        handle = path.open("rb")
    except OSError as error:
        raise RnnclfError(f"cannot read --input {path}: {error.strerror}") from None
    lines = _CountingLines(handle, bar)
    if kind == "jsonl":
        return None, None, _json_records(handle, lines, path)
    reader = csv.reader(lines, delimiter="\t" if kind == "tsv" else ",")
    columns = None
    if header:
        try:
            columns = next(reader)
        except StopIteration:
            handle.close()
            raise RnnclfError(f"--input {path} is empty; expected a header row") from None
    return columns, None, _csv_rows(handle, reader, columns, path)


def _json_records(handle: IO[bytes], lines: _CountingLines, path: Path) -> Iterator[Record]:
    with handle:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise RnnclfError(f"{path}, line {number}: not valid JSON ({error.msg}); fix "
                                  "the line") from None
            if not isinstance(value, dict):
                raise RnnclfError(f"{path}, line {number}: expected a JSON object, found "
                                  f"{type(value).__name__}")
            yield Record(number, value)


def _csv_rows(handle: IO[bytes], reader: Any, columns: list[str] | None, path: Path
              ) -> Iterator[Record]:
    """The CSV records after the header; a broken or short row stops with its line."""
    def broken(line: int, problem: str) -> None:
        raise RnnclfError(f"{path}, line {line}: {problem}; fix the row") from None

    with handle, contextlib.closing(csv_records(reader, broken)) as records:
        for line, fields in records:
            if columns is not None and len(fields) != len(columns):
                raise RnnclfError(f"{path}, line {line}: expected {len(columns)} columns as in "
                                  f"the header, found {len(fields)}; fix the row")
            yield Record(line, fields)


def _text_getter(columns: list[str] | None, kind: str, fields: list[str], path: Path):
    """A function record -> its text (fields joined by a space; missing fields are empty)."""
    if kind == "parquet":
        _check_columns(columns, fields, path)
    if kind in ("jsonl", "parquet"):
        def from_object(record: Record) -> str:
            values: dict[str, Any] = record.values  # type: ignore[assignment]
            if not any(name in values for name in fields):
                raise RnnclfError(f"{path}, line {record.line}: no {' or '.join(fields)} field; "
                                  "name the text field(s) with --text-field")
            parts = [values.get(name) for name in fields]
            return " ".join(str(part) for part in parts if part is not None).strip()
        return from_object
    if columns is not None:
        _check_columns(columns, fields, path)
        indices = [columns.index(name) for name in fields]
    else:
        if not all(name.isdigit() for name in fields):
            raise RnnclfError("--text-field: without a header row give 0-based column numbers "
                              "(e.g. 1 or 1,2)")
        indices = [int(name) for name in fields]

    def from_row(record: Record) -> str:
        row = record.values
        return " ".join(row[i] for i in indices if i < len(row)).strip()  # type: ignore[index]
    return from_row


def _check_columns(columns: list[str] | None, fields: list[str], path: Path) -> None:
    missing = [name for name in fields if name not in (columns or [])]
    if missing:
        raise RnnclfError(f"--text-field {','.join(missing)} is not a column of {path} "
                          f"(columns: {', '.join((columns or [])[:20])}); choose --text-field")


@contextlib.contextmanager
def _output(path: Path, binary: bool) -> Iterator[IO[Any]]:
    if str(path) == "-":
        yield sys.stdout
        return
    if not path.parent.is_dir():
        raise RnnclfError(f"--output folder {path.parent} does not exist; create it first")
    with atomic_open(path, "wb" if binary else "w") as handle:
        yield handle


def _writer(handle: IO[Any], kind: str, path: Path, columns: list[str] | None, schema: Any,
            added: list[str], multi_label: bool) -> Any:
    if kind == "parquet":
        from rnnclf.inference.parquet_files import ParquetRowWriter
        return ParquetRowWriter(handle, path, columns, schema, added, multi_label)
    return _Writer(handle, kind, columns, added)


@dataclass
class FileStats:
    rows: int = 0
    empty: int = 0  # rows without text: their prediction columns are left empty


def predict_file(checkpoint: Path, input_path: Path, output_path: Path,
                 text_fields: str | None = None, header: bool | None = None,
                 all_probabilities: bool = False, batch_size: int | None = None,
                 chunk_rows: int = 16_384, device_name: str = "auto", progress: bool = True,
                 precision: str = "fp32", quantize: str | None = None) -> FileStats:
    """Classify every row of `input_path`; write `output_path` with the prediction columns."""
    if not input_path.is_file():
        raise RnnclfError(f"--input {input_path} does not exist or is not a file")
    in_kind = file_format(input_path, "--input")
    out_kind = "jsonl" if str(output_path) == "-" else file_format(output_path, "--output")
    predictor = Predictor(checkpoint, device_name, precision, quantize)
    trained = predictor.data_config
    own_data = trained.dataset != "ag_news"  # its text columns are the ones trained on
    fields = split_fields(text_fields or (trained.text_fields if own_data else "text"))
    if header is None:
        header = trained.header if own_data and trained.dataset == "csv" else True
    labels = predictor.label_names
    added = [LABEL_COLUMN, PROBABILITY_COLUMN]
    if all_probabilities:
        added += [f"{PROBABILITY_COLUMN}_{name}" for name in labels]
    bar = tqdm(total=input_path.stat().st_size, unit="B", unit_scale=True, desc="predict",
               disable=not progress, dynamic_ncols=True)
    columns, schema, records = _read_records(input_path, in_kind, header, bar, chunk_rows)
    text_of_record = _text_getter(columns, in_kind, fields, input_path)
    clash = [name for name in added if columns is not None and name in columns]
    if clash:
        raise RnnclfError(f"{input_path} already has a column {clash[0]!r}; rename it so the "
                          "prediction columns do not overwrite it")
    stats = FileStats()
    batch_size = batch_size or predictor.batch_size
    with _output(output_path, binary=out_kind == "parquet") as handle:
        writer = _writer(handle, out_kind, output_path, columns,
                         schema if in_kind == "parquet" else None, added, predictor.multi_label)
        chunk: list[Record] = []
        for record in records:
            chunk.append(record)
            if len(chunk) >= chunk_rows:
                _predict_chunk(predictor, chunk, text_of_record, batch_size, writer, stats,
                               all_probabilities)
                chunk = []
        if chunk:
            _predict_chunk(predictor, chunk, text_of_record, batch_size, writer, stats,
                           all_probabilities)
        writer.close()
    bar.close()
    if stats.rows == 0:
        raise RnnclfError(f"--input {input_path} holds no rows to classify")
    return stats


class _Writer:
    """Rows out in the output format: input columns first, then the prediction columns."""

    def __init__(self, handle: IO[str], kind: str, columns: list[str] | None,
                 added: list[str]) -> None:
        self.handle = handle
        self.kind = kind
        self.columns = columns
        self.added = added
        self.csv = None
        if kind != "jsonl":
            self.csv = csv.writer(handle, delimiter="\t" if kind == "tsv" else ",",
                                  lineterminator="\n")
            if columns is not None:
                self.csv.writerow([*columns, *added])

    def flush(self) -> None:
        """Rows are written as they come."""

    def close(self) -> None:
        """The handle is the caller's."""

    def write(self, record: Record, predicted: list[Any]) -> None:
        values = record.values
        if self.csv is not None:
            if isinstance(values, dict):  # JSON in, CSV out: one column per key of the row
                if self.columns is None:
                    self.columns = list(values)
                    self.csv.writerow([*self.columns, *self.added])
                row = [_cell(values.get(name)) for name in self.columns]
            else:
                row = list(values)
            self.csv.writerow([*row, *predicted])
            return
        out = row_with_predictions(record, self.columns, self.added, predicted)
        self.handle.write(json.dumps(out, ensure_ascii=False) + "\n")


def row_with_predictions(record: Record, columns: list[str] | None, added: list[str],
                         predicted: list[Any]) -> dict[str, Any]:
    """One output row as a mapping: the record's fields (by column name, or by position when
    there is no header), then the prediction columns."""
    values = record.values
    if isinstance(values, dict):
        row = dict(values)
    elif columns is not None:
        row = dict(zip(columns, values))
    else:
        row = {str(index): value for index, value in enumerate(values)}
    row.update(zip(added, predicted))
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@torch.inference_mode()
def _predict_chunk(predictor: Predictor, chunk: list[Record], text_of_record: Any,
                   batch_size: int, writer: Any, stats: FileStats,
                   all_probabilities: bool) -> None:
    char_limit = predictor.max_length * CHARS_PER_TOKEN_BOUND
    texts = [text_of_record(record) for record in chunk]
    has_text = [bool(text) for text in texts]
    token_lists = [text_of(text[:char_limit], predictor.clean) for text in texts]
    split = encode_texts(token_lists, [0] * len(texts), predictor.vocab)
    with predictor.autocast():
        logits, _ = predict_split(predictor.model, split, batch_size, predictor.max_length,
                                  predictor.device)  # (N, C), in row order
    probabilities = predictor.probabilities(logits)
    best_values, best_indices = probabilities.max(dim=1)
    rows = probabilities.tolist()
    chosen_rows = predictor.chosen_labels(probabilities) if predictor.multi_label else None
    for position, (record, present, best, index, row) in enumerate(zip(
            chunk, has_text, best_values.tolist(), best_indices.tolist(), rows)):
        stats.rows += 1
        if not present:
            stats.empty += 1
            predicted: list[Any] = [None] * (2 + (len(row) if all_probabilities else 0))
            if writer.kind in ("csv", "tsv"):
                predicted = [""] * len(predicted)
        elif chosen_rows is not None:
            predicted = _multilabel_columns(predictor, chosen_rows[position], row, writer.kind)
            if all_probabilities:
                predicted += [round(value, 6) for value in row]
        else:
            predicted = [predictor.label_names[index], round(best, 6)]
            if all_probabilities:
                predicted += [round(value, 6) for value in row]
        writer.write(record, predicted)
    writer.flush()


def _multilabel_columns(predictor: Predictor, chosen: list[int], row: list[float], kind: str
                        ) -> list[Any]:
    """A multi-label row's predicted_label and probability: every label at or above its
    threshold (most probable first) and their probabilities; lists in JSON lines and Parquet,
    joined by the model's data.label_separator in CSV/TSV."""
    labels = [predictor.label_names[index] for index in chosen]
    values = [round(row[index], 6) for index in chosen]
    if kind in ("jsonl", "parquet"):
        return [labels, values]
    separator = predictor.data_config.label_separator
    return [separator.join(labels), separator.join(str(value) for value in values)]
