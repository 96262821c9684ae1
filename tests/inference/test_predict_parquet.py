"""`rnnclf predict --input/--output` with Parquet files (the parquet extra)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from test_predict_file import TEXTS, checkpoint, expected  # noqa: F401 (a fixture)

from rnnclf.errors import RnnclfError
from rnnclf.inference.files import predict_file

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def write_parquet(path: Path, texts: list[str]) -> Path:
    table = pa.table({"id": pa.array(range(len(texts)), pa.int32()), "body": texts,
                      "score": [0.5 * i for i in range(len(texts))]})
    pq.write_table(table, path)
    return path


def test_parquet_in_parquet_out_keeps_types_order_and_streams_in_row_groups(
        tmp_path: Path, checkpoint: Path) -> None:  # noqa: F811
    source = write_parquet(tmp_path / "in.parquet", [*TEXTS, ""])
    stats = predict_file(checkpoint, source, tmp_path / "out.parquet", text_fields="body",
                         all_probabilities=True, chunk_rows=3, progress=False,
                         device_name="cpu")
    assert stats.rows == 5 and stats.empty == 1
    result = pq.ParquetFile(tmp_path / "out.parquet")
    assert result.metadata.num_row_groups == 2  # one per chunk of 3 rows
    table = result.read()
    assert table.schema.field("id").type == pa.int32()  # the input's own types
    assert table.schema.field("probability").type == pa.float64()
    assert table.column_names == ["id", "body", "score", "predicted_label", "probability",
                                  "probability_neg", "probability_pos"]
    rows = table.to_pylist()
    assert [row["id"] for row in rows] == [0, 1, 2, 3, 4]
    for row, (label, probability) in zip(rows, expected(checkpoint)):
        assert row["predicted_label"] == label
        assert row["probability"] == pytest.approx(probability, abs=1e-5)
        assert row["probability_neg"] + row["probability_pos"] == pytest.approx(1, abs=1e-5)
    assert rows[4]["predicted_label"] is None and rows[4]["probability"] is None


def test_csv_to_parquet_and_parquet_to_csv(tmp_path: Path, checkpoint: Path) -> None:  # noqa: F811
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as handle:
        csv.writer(handle).writerows([["text", "note"], *[[text, "n"] for text in TEXTS]])
    predict_file(checkpoint, source, tmp_path / "out.parquet", progress=False,
                 device_name="cpu")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("note").type == pa.string()
    assert table.column("predicted_label").to_pylist() == [e[0] for e in expected(checkpoint)]

    parquet_source = write_parquet(tmp_path / "in.parquet", TEXTS)
    predict_file(checkpoint, parquet_source, tmp_path / "out.csv", text_fields="body",
                 progress=False, device_name="cpu")
    with (tmp_path / "out.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ["0", "1", "2", "3"]
    assert [row["predicted_label"] for row in rows] == [e[0] for e in expected(checkpoint)]


def test_parquet_mistakes_are_one_line_each(tmp_path: Path, checkpoint: Path,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_parquet(tmp_path / "in.parquet", TEXTS)
    with pytest.raises(RnnclfError, match="--text-field text is not a column.*id, body, score"):
        predict_file(checkpoint, source, tmp_path / "out.csv", progress=False)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(RnnclfError, match="cannot read --input .*broken.parquet as Parquet"):
        predict_file(checkpoint, broken, tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()  # nothing half-written
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the extra were not installed
    with pytest.raises(RnnclfError, match=r"needs the parquet extra: .*'rnnclf\[parquet\]'"):
        predict_file(checkpoint, source, tmp_path / "out.csv", text_fields="body",
                     progress=False)
