"""The run folder: where it is, and refusing to overwrite a run by accident."""

from __future__ import annotations

import contextlib
from pathlib import Path

from rnnclf.config.schema import Config, default_runs_dir
from rnnclf.errors import RnnclfError

RUN_FILES = ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.json", "eval.json")


def run_directory(config: Config) -> Path:
    runs_dir = Path(config.train.runs_dir).expanduser() if config.train.runs_dir \
        else default_runs_dir()
    return runs_dir / config.train.name


def prepare_run_directory(run_dir: Path, overwrite: bool) -> None:
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise RnnclfError(f"{run_dir} already holds a run ({', '.join(existing)}); pass --resume "
                          f"{run_dir} to continue it, --overwrite to replace it, or choose "
                          "another train.name")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in existing:
            (run_dir / name).unlink()
    except OSError as error:
        raise RnnclfError(f"cannot write to run folder {run_dir}: {error.strerror}; choose "
                          "another train.runs_dir") from None


def remove_stale_temp_files(run_dir: Path) -> None:
    """Temp files a killed process left behind (`.last.pt.<random>.tmp`); never read by anyone."""
    for name in RUN_FILES:
        for temp in run_dir.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                temp.unlink()
