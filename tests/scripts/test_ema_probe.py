"""scripts/ema_probe.py on a tiny keyword set: an EMA val line per decay and epoch, and each
final EMA written as a checkpoint and scored on test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from agnews_support import make_keyword_agnews

from rnnclf.runs.checkpoint import load_checkpoint, load_model

REPO = Path(__file__).resolve().parents[2]


def test_ema_probe_reports_each_average_and_leaves_the_run_untouched(tmp_path: Path) -> None:
    data = make_keyword_agnews(tmp_path / "data")
    tiny = ["model.embedding_dim=8", "model.pretrained_embeddings=", "model.hidden_size=8",
            "model.ngram_buckets=500", "train.epochs=2", "train.batch_size=8",
            "data.val_fraction=0.1", "train.early_stopping_patience=0"]
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "ema_probe.py"), "--data-dir", str(data),
         "--runs-dir", str(tmp_path / "runs"), "--decays", "0.5,0.9", *tiny],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "RNNCLF_CACHE_DIR": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = re.findall(r"epoch (\d), EMA ([\d.]+): val acc ([\d.]+)", result.stdout)
    assert [(epoch, decay) for epoch, decay, _ in lines] == [
        ("1", "0.5"), ("1", "0.9"), ("2", "0.5"), ("2", "0.9")]
    tests = re.findall(r"final EMA ([\d.]+): test acc ([\d.]+)", result.stdout)
    assert [decay for decay, _ in tests] == ["0.5", "0.9"]
    assert all(0 <= float(accuracy) <= 100 for _, accuracy in tests)
    run = tmp_path / "runs" / "ema_s0"
    averaged = load_checkpoint(run / "ema0.9.pt")["model_state"]
    trained = load_checkpoint(run / "last.pt")["model_state"]
    assert averaged.keys() == trained.keys()
    assert any(not torch.equal(averaged[name], trained[name]) for name in trained)
    load_model(run / "ema0.5.pt")  # a checkpoint like any other
