"""The Python API, for notebooks and scripts: what the CLI does, returning Python objects.

    from rnnclf import Predictor, evaluate, load_config, train

    config = load_config("agnews_lstm", {"train.epochs": 2, "data.dir": "data/ag_news"})
    result = train(config)                # TrainResult: run_dir, best_checkpoint, summary
    metrics = evaluate(result)            # the dict `rnnclf eval --json` prints
    Predictor(result.best_checkpoint).predict(["Oil prices climb"])  # [Prediction(...)]

Mistakes raise RnnclfError with the one line the CLI would print. Torch is imported when a
function needs it, not when rnnclf is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnclf.config import Config
from rnnclf.config import load_config as _load_config
from rnnclf.errors import RnnclfError

if TYPE_CHECKING:
    from rnnclf.inference.predictor import Prediction

Overrides = Mapping[str, Any] | Iterable[str] | None


@dataclass(frozen=True)
class TrainResult:
    """What a training run left: its folder, its best checkpoint and its summary.json."""

    run_dir: Path
    best_checkpoint: Path
    summary: dict[str, Any]  # summary.json: best epoch and val accuracy, rows, seconds, epochs
    config: Config  # the resolved config it trained with

    @property
    def best_val_acc(self) -> float:
        return float(self.summary["best_val_acc"])

    @property
    def epochs(self) -> list[dict[str, Any]]:
        """One record per epoch, as in metrics.jsonl (an ensemble's are in its members' runs)."""
        return list(self.summary.get("epochs", []))


def load_config(config: str | os.PathLike[str] | None = None,
                overrides: Overrides = None) -> Config:
    """A validated Config from a YAML path, a shipped config's name (`"agnews_lstm"`; an
    existing file wins) or the defaults (None), with overrides: `{"train.epochs": 2}`,
    `{"train": {"epochs": 2}}` or `["train.epochs=2"]`."""
    return _load_config(Path(config) if config is not None else None, _override_strings(overrides))


def train(config: Config | str | os.PathLike[str] | None = None, overrides: Overrides = None,
          *, overwrite: bool = False, resume: str | os.PathLike[str] | None = None,
          log: Callable[[str], None] | None = print) -> TrainResult:
    """Train a config (a Config, or what load_config takes), or go on with the run folder
    `resume` (with the few overrides --resume accepts); the run's files go to runs/<name>/ as
    with `rnnclf train`. `log=None` trains quietly (set train.progress=False for no bar)."""
    from rnnclf.training.distributed import session
    from rnnclf.training.ensemble import fit_ensemble, load_run_config
    from rnnclf.training.trainer import fit

    strings = _override_strings(overrides)
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None:
        if config is not None:
            raise RnnclfError("resume continues a run with its saved config; drop the config")
        config = load_run_config(resume_dir, strings)
    elif not isinstance(config, Config):
        config = load_config(config, strings)
    elif strings:
        raise RnnclfError("give overrides to load_config, or pass a config path or name here")
    log = log or _silent
    with session(config.train.device) as dist:
        if config.train.ensemble > 1 and dist.enabled:
            raise RnnclfError("train.ensemble cannot run under torchrun; train it in one "
                              "process, or set train.ensemble=1")
        if config.train.ensemble > 1:
            summary = fit_ensemble(config, overwrite=overwrite, resume_dir=resume_dir,
                                   overrides=strings, log=log)
        else:
            summary = fit(config, overwrite=overwrite, resume_dir=resume_dir, log=log, dist=dist)
    run_dir = Path(summary["run_dir"]).resolve()
    return TrainResult(run_dir, run_dir / "best.pt", summary, config)


def evaluate(checkpoint: TrainResult | str | os.PathLike[str], split: str = "test",
             data_file: str | os.PathLike[str] | None = None, *, device: str = "auto",
             precision: str = "fp32", write: bool = True) -> dict[str, Any]:
    """The metrics `rnnclf eval --json` prints, as a dict: accuracy, macro_f1, per-class
    precision/recall/F1, confusion matrix. `write` also saves eval.json beside the checkpoint."""
    from rnnclf.inference.evaluate import evaluate_checkpoint

    if split not in ("test", "val"):
        raise RnnclfError(f"split {split!r} is not allowed; use test or val (or data_file)")
    return evaluate_checkpoint(checkpoint_path(checkpoint), split=split,
                               data_file=Path(data_file) if data_file is not None else None,
                               device_name=device, precision=precision, write=write)


def predict(checkpoint: TrainResult | str | os.PathLike[str], texts: str | Sequence[str],
            top_k: int = 1, *, device: str = "auto", precision: str = "fp32"
            ) -> list[Prediction]:
    """Labels and probabilities for `texts` (one Prediction each). To classify more than once,
    keep a Predictor: it loads the model once."""
    from rnnclf.inference.predictor import Predictor

    batch = [texts] if isinstance(texts, str) else list(texts)
    return Predictor(checkpoint_path(checkpoint), device, precision).predict(batch, top_k=top_k)


def checkpoint_path(checkpoint: TrainResult | str | os.PathLike[str]) -> Path:
    """A TrainResult's best.pt, or the path given."""
    return checkpoint.best_checkpoint if isinstance(checkpoint, TrainResult) else Path(checkpoint)


def _override_strings(overrides: Overrides) -> list[str]:
    """`section.key=value` strings, as the CLI takes them. Mapping values are written as YAML
    (JSON) scalars, so Python's True, 3e-3 or [1, 2] mean what they would in a config file."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, Mapping):
        return [str(text) for text in overrides]
    strings = []
    for key, value in overrides.items():
        if isinstance(value, Mapping) and "." not in key:  # {"train": {"epochs": 2}}
            strings += [f"{key}.{name}={_scalar(inner)}" for name, inner in value.items()]
        else:
            strings.append(f"{key}={_scalar(value)}")
    return strings


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        return json.dumps(value)
    except TypeError:
        raise RnnclfError(f"override value {value!r} is not a number, text, bool or list; "
                          "give one of those") from None


def _silent(*_: Any, **__: Any) -> None:
    """The log of `train(..., log=None)`."""
