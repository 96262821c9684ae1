"""Resume rules in one place: which overrides `--resume` accepts, and the config it continues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnclf.config.loading import apply_overrides, from_saved_dict
from rnnclf.config.schema import Config
from rnnclf.errors import RnnclfError
from rnnclf.runs.checkpoint import load_checkpoint

# The overrides `--resume` accepts: they change how a run goes on, not what it trains.
RESUMABLE_KEYS = frozenset({"train.epochs", "train.device", "train.num_threads", "train.progress",
                            "train.early_stopping_patience", "train.eval_batch_size",
                            "train.tensorboard", "train.loggers", "train.mlflow_experiment"})


def load_resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The saved config of a run, with the few overrides that make sense when resuming."""
    if not (run_dir / "last.pt").is_file():
        raise RnnclfError(f"{run_dir} holds no last.pt to resume from; start a new run instead")
    payload = load_checkpoint(run_dir / "last.pt")
    return from_saved_dict(resume_overrides_applied(payload["config"], overrides),
                           source=f"{run_dir}/last.pt")


def resume_overrides_applied(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`raw` (a saved config) with `overrides`, refusing any key `--resume` cannot change."""
    for text in overrides:
        key = text.partition("=")[0].strip()
        if key not in RESUMABLE_KEYS:
            raise RnnclfError(f"--resume keeps the run's config; {key} cannot change "
                              f"(allowed: {', '.join(sorted(RESUMABLE_KEYS))})")
    return apply_overrides(raw, overrides)
