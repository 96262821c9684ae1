"""Regression on the real data: a short GRU run on train_subset.csv must beat 80% on test.csv."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MIN_ACCURACY = 0.80


@pytest.mark.slow
def test_short_gru_run_on_real_ag_news(ag_news_dir: Path, tmp_path: Path) -> None:
    if not (ag_news_dir / "train_subset.csv").is_file():
        pytest.skip(f"{ag_news_dir / 'train_subset.csv'} not found")
    # One epoch of a 64-unit bidirectional GRU: about 30 s of training on one CPU thread
    # (one thread: on a shared 2-core machine, two threads can be many times slower).
    train = subprocess.run(
        [sys.executable, "-m", "rnnclf", "train", f"data.dir={ag_news_dir}",
         "data.train_file=train_subset.csv", "data.download=false", "data.max_length=128",
         "model.cell=gru", "model.embedding_dim=64", "model.pretrained_embeddings=",
         "model.hidden_size=64", "train.epochs=1",
         "train.num_threads=1", "train.progress=false", "train.name=real"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert train.returncode == 0, train.stdout + train.stderr
    summary = json.loads((tmp_path / "runs" / "real" / "summary.json").read_text())
    assert summary["train_rows"] + summary["val_rows"] == 46958
    assert summary["skipped_rows"] == 0

    evaluation = subprocess.run(
        [sys.executable, "-m", "rnnclf", "eval", str(tmp_path / "runs" / "real" / "best.pt"),
         "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr
    report = json.loads(evaluation.stdout)
    assert report["num_examples"] == 7600
    assert Path(report["data"]).resolve() == (ag_news_dir / "test.csv").resolve()
    print(f"test accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}")
    assert report["accuracy"] > MIN_ACCURACY, report["accuracy"]
    assert min(row["recall"] for row in report["per_class"].values()) > 0.6
