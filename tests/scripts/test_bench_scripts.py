"""scripts/bench.py and scripts/gpu_bench.py in their smoke modes: every measurement reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnclf.device import cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_run_reports_every_measurement(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--smoke",
                             "--json", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    names = [row["name"] for row in report["training"]]
    assert [name.split()[0] for name in names[:6]] == ["rnn-uni", "rnn-bi", "lstm-uni",
                                                       "lstm-bi", "gru-uni", "gru-bi"]
    assert any("default" in name for name in names)
    for row in report["training"]:
        bf16 = ("inference_bf16_samples_s", "inference_bf16_over_train")
        for key in ("train_samples_s", "naive_samples_s", "speedup_vs_naive",
                    "fraction_of_matmul", "fraction_of_onednn_matmul", "inference_samples_s",
                    *(bf16 if cpu_has_native_bf16() else ())):
            assert row[key] > 0, key
    bf16 = ("onednn_bf16_gflops",) if cpu_has_native_bf16() else ()
    for key in ("gflops", "onednn_fp32_gflops", *bf16):
        assert report["matmul"][key] > 0, key
    assert report["preprocessing"]["first_s"] > report["preprocessing"]["cached_s"] > 0
    assert report["memory"]["peak_rss_mib"] > 50


def test_bench_rows_picks_rows_and_names_the_valid_ones(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "scripts" / "bench.py"), "--smoke", "--json",
               "--workdir", str(tmp_path), "--rows"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([*command, "gru-bi"], capture_output=True, text=True, timeout=600,
                            check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row["name"] for row in json.loads(result.stdout)["training"]] == ["gru-bi"]
    result = subprocess.run([*command, "gru-bi,gru-tri"], capture_output=True, text=True,
                            timeout=600, check=False, env=env)
    assert result.returncode != 0 and not result.stdout
    assert "no bench row named gru-tri; rows: rnn-uni, rnn-bi" in result.stderr


def test_gpu_bench_smoke_run_on_the_cpu() -> None:
    """scripts/gpu_bench.py (run by hand on a GPU machine) keeps working between GPU sessions."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--smoke",
                             "--device", "cpu", "--batch-sizes", "8", "16", "--json"],
                            capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert {(row["model"], row["precision"], row["batch_size"]) for row in rows} == {
        (model, precision, batch) for model in ("default", "bilstm2-256")
        for precision in ("fp32", "bf16")[:1 + cpu_has_native_bf16()]
        for batch in (8, 16)}  # no fp16 on the CPU, bf16 only where it is native
    for row in rows:
        assert "error" not in row, row
        assert row["train_samples_s"] > 0 and row["inference_samples_s"] > 0
        assert row["seconds_per_120k_epoch"] == pytest.approx(120_000 / row["train_samples_s"])
        assert row["gpu_utilisation_pct"] is None and row["peak_gpu_memory_mib"] is None
    refused = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--smoke",
                              "--device", "cuda:7"], capture_output=True, text=True, timeout=600,
                             check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    if not torch.cuda.is_available():
        assert refused.returncode == 1 and refused.stderr.startswith("error: --device cuda:7")
