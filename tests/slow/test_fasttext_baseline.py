"""Smoke test of scripts/fasttext_baseline.py on tiny generated files (skips without fastText)."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
from agnews_support import write_agnews_csv

pytest.importorskip("fasttext")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fasttext_baseline.py"
WORDS = {1: ["war", "minister", "election"], 2: ["goal", "match", "coach"],
         3: ["shares", "profit", "bank"], 4: ["software", "chip", "internet"]}


def _write_csv(path: Path, rows: int) -> None:
    rng = random.Random(1)
    lines = []
    for index in range(rows):
        label = index % 4 + 1
        words = [rng.choice(WORDS[label]) for _ in range(5)]
        lines.append((str(label), " ".join(words[:2]), " ".join(words[2:]) + " #39;s"))
    write_agnews_csv(path, lines)


def _load_script():
    spec = importlib.util.spec_from_file_location("fasttext_baseline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fasttext_baseline_reports_one_line_per_setting(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    _write_csv(tmp_path / "train.csv", 300)
    _write_csv(tmp_path / "test.csv", 80)
    script = _load_script()
    code = script.main(["--data-dir", str(tmp_path), "--lr", "0.1,0.5", "--epoch", "5",
                        "--dim", "10", "--bucket", "10000", "--json"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    results = [json.loads(line) for line in lines]
    assert [result["wordNgrams"] for result in results] == [1, 2]
    for result in results:
        assert result["test_rows"] == 80 and result["train_rows"] + result["val_rows"] == 300
        assert result["test_acc"] > 0.9  # the classes are separable by single words
        assert "fasttext_baseline.py" in result["command"]


def test_same_text_pipeline_as_rnnclf() -> None:
    script = _load_script()
    assert script.fasttext_line(0, "Oil #39;s price\\rises") == "__label__1 oil ' s price rises"


def test_missing_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = _load_script()
    assert script.main(["--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
