"""Helpers shared by the edge-case suites (fuzzed configs, mirror downloads, unusual predict
input, hostile files, faults, interrupt and resume): tiny generated AG News, tiny configs,
and a way to run the real `rnnclf` entry point (in-process or as a subprocess)."""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from agnews_support import write_agnews_folder

REPO = Path(__file__).resolve().parents[1]

WORDS = {
    1: ["president", "minister", "election", "embassy", "troops", "treaty", "rebels", "summit"],
    2: ["football", "coach", "goal", "season", "striker", "league", "medal", "tennis"],
    3: ["shares", "profit", "earnings", "investors", "merger", "stocks", "bank", "bonds"],
    4: ["software", "internet", "computer", "linux", "browser", "chip", "nasa", "server"],
}
NOISE = ["the", "a", "of", "to", "in", "on", "said", "new", "after", "with", "week", "year"]


def generated_rows(count: int, seed: int = 1) -> list[tuple[str, str, str]]:
    """`count` learnable AG News rows: (label "1"-"4", title, description)."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = index % 4 + 1

        def words(n: int, label: int = label) -> str:
            return " ".join(rng.choice(WORDS[label]) if rng.random() < 0.6 else rng.choice(NOISE)
                            for _ in range(n))

        rows.append((str(label), words(rng.randint(2, 5)).capitalize(), words(rng.randint(4, 12))))
    return rows


def csv_bytes(rows: list[tuple[str, str, str]]) -> bytes:
    """The original AG News layout: every field quoted, LF line ends."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_dataset(folder: Path, train_rows: int = 200, test_rows: int = 40) -> Path:
    return write_agnews_folder(folder, generated_rows(train_rows, seed=1),
                               generated_rows(test_rows, seed=2))


def quiet(*_: object) -> None:
    """A log that prints nothing (fit(..., log=quiet))."""


def tiny_overrides(data_dir: Path, runs_dir: Path, name: str = "tiny", epochs: int = 2,
                   **extra: object) -> list[str]:
    """Overrides for a model that trains in well under a second per epoch on 2 CPU cores."""
    values: dict[str, object] = {
        "data.dir": data_dir, "data.min_freq": 1, "data.val_fraction": 0.1,
        "model.embedding_dim": 8, "model.pretrained_embeddings": "", "model.hidden_size": 8,
        "model.dropout": 0.2,
        "train.batch_size": 8, "train.epochs": epochs, "train.device": "cpu",
        "train.num_threads": 1, "train.progress": "false", "train.runs_dir": runs_dir,
        "train.name": name, "train.early_stopping_patience": 0,
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def assert_one_error_line(self, *needles: str, other_stderr: bool = False) -> str:
        """Exactly one `error:` line, no traceback, non-zero exit; returns that line. Unless
        `other_stderr` (progress bars), stderr holds nothing else but `checkpoint:` notes."""
        assert self.code != 0, (self.code, self.stdout, self.stderr)
        assert "Traceback" not in self.stderr + self.stdout, self.stderr
        error_lines = [line for line in self.stderr.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1, self.stderr
        if not other_stderr:
            others = [line for line in self.stderr.splitlines()
                      if line not in error_lines and not line.startswith("checkpoint: ")]
            assert not others, self.stderr
        assert self.stderr.strip().splitlines()[-1] == error_lines[0], self.stderr
        for needle in needles:
            assert needle in error_lines[0], (needle, error_lines[0])
        return error_lines[0]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None,
            monkeypatch: pytest.MonkeyPatch | None = None) -> CliResult:
    """Run `rnnclf.cli.main` in this process (fast: torch is imported once) like the console
    script does. Anything but SystemExit escaping main() is a bug and fails the test."""
    from rnnclf import cli

    capsys.readouterr()  # drop whatever earlier steps printed
    saved_argv, saved_stdin = sys.argv, sys.stdin
    sys.argv = ["rnnclf", *[str(arg) for arg in args]]
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8", "surrogateescape")),
                                     encoding="utf-8")
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv, sys.stdin = saved_argv, saved_stdin
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO), "RNNCLF_CACHE_DIR": str(tmp_path / "cache"),
                "RNNCLF_RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1"})
    return env


def run_subprocess(args: list[str], tmp_path: Path, stdin: bytes | None = None,
                   timeout: float = 120) -> CliResult:
    completed = subprocess.run([sys.executable, "-m", "rnnclf", *[str(a) for a in args]],
                               input=stdin, capture_output=True, env=subprocess_env(tmp_path),
                               timeout=timeout, cwd=tmp_path)
    return CliResult(completed.returncode, completed.stdout.decode("utf-8", "replace"),
                     completed.stderr.decode("utf-8", "replace"))
