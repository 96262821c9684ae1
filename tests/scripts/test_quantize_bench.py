"""scripts/quantize_bench.py on a tiny trained model: every row and figure reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agnews_support import make_keyword_agnews
from tiny_support import tiny_config

from rnnclf.training.trainer import fit

REPO = Path(__file__).resolve().parents[2]


def test_quantize_bench_reports_accuracy_speed_and_size(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    config = tiny_config(make_keyword_agnews(tmp_path / "data"), tmp_path / "runs")
    config.train.epochs = 1
    config.model.ngram_buckets = 500
    fit(config, log=lambda *_: None)
    checkpoint = tmp_path / "runs" / "tiny" / "best.pt"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "quantize_bench.py"),
                             str(checkpoint), "--repeats", "1", "--onnx", "--torch-ao",
                             "--json"], capture_output=True, text=True, timeout=600,
                            check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    assert [row["model"].split(" (")[0] for row in rows] == [
        "fp32", "int8", "int8", "torch.ao dynamic int8", "ONNX fp32", "ONNX int8"]
    assert all(0 <= row["accuracy"] <= 1 for row in rows)
    fp32, int8_file = rows[0], rows[2]
    assert int8_file["model"] == "int8 (best.int8.pt)"
    assert int8_file["file_bytes"] < fp32["file_bytes"]
    assert int8_file["model_bytes"] < fp32["model_bytes"]
    assert all(rate > 0 for rate in fp32["texts_per_s"])
