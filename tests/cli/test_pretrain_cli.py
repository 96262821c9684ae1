"""`rnnclf pretrain` then `rnnclf train model.init_from=...` end to end on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from robustness_support import tiny_overrides


def _rnnclf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rnnclf", *args], cwd=cwd, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=600)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def test_pretrain_then_fine_tune_then_eval(data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    common = tiny_overrides(data_dir, runs, name="tiny", epochs=1)
    out = _ok(_rnnclf("pretrain", *common, "pretrain.epochs=2", "pretrain.batch_size=8",
                      "pretrain.output=tied", cwd=tmp_path))
    assert "language model texts:" in out and "best val perplexity" in out
    records = [json.loads(line) for line in (runs / "tiny_lm" / "metrics.jsonl").open()]
    assert [record["epoch"] for record in records] == [1, 2]
    assert all(record["val_ppl"] > 1 for record in records)
    out = _ok(_rnnclf("train", *common, "model.init_from=tiny_lm", "train.name=fine",
                      cwd=tmp_path))
    assert "(language model): embedding and gru layers loaded, same vocabulary" in out
    _ok(_rnnclf("eval", str(runs / "fine" / "best.pt"), cwd=tmp_path))


def test_fine_tuning_another_architecture_is_one_error_line(data_dir: Path,
                                                            tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    common = tiny_overrides(data_dir, runs, name="tiny", epochs=1)
    _ok(_rnnclf("pretrain", *common, "pretrain.batch_size=8", cwd=tmp_path))
    result = _rnnclf("train", *common, "model.init_from=tiny_lm", "model.cell=lstm",
                     "train.name=fine", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.cell=gru, this model has model.cell=lstm" in lines[0]
    assert not (runs / "fine" / "best.pt").exists()
