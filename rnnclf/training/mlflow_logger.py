"""MLflow tracking of a run (`train.loggers: [mlflow]`; the optional `mlflow` extra).

Where: $MLFLOW_TRACKING_URI when set (a server, or any store MLflow knows), else a SQLite store in
the run folder, runs/<name>/mlflow.db, with the artifacts beside it in runs/<name>/mlartifacts
(MLflow 3 keeps its plain-file store only behind an opt-in; SQLite is its local default, and
works offline). What: the resolved config as parameters (`section.key`), every number of each
metrics.jsonl record at its epoch, and at the end config.yaml, summary.json, the plots and the
checkpoint's path (a tag and checkpoint.txt; the checkpoint itself stays in the run folder).

The run id is kept in runs/<name>/mlflow_run.json, so `--resume` goes on logging into the same
MLflow run, and logs the epochs a killed run could not. Everything goes through an MlflowClient
made here: no global MLflow state (active run, tracking URI) is set or read beside the env var.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from rnnclf.config.schema import Config
from rnnclf.errors import Interrupted, RnnclfError
from rnnclf.runs.atomic import atomic_write_text
from rnnclf.training.tensorboard import flat_hparams

INSTALL_HINT = "pip install 'rnnclf[mlflow]'"
RUN_FILE = "mlflow_run.json"  # {"tracking_uri": ..., "run_id": ...}
STORE_FILE = "mlflow.db"
ARTIFACTS_FOLDER = "mlartifacts"
CHECKPOINT_TAG = "rnnclf.checkpoint"
ARTIFACT_FILES = ("config.yaml", "summary.json", "curves.png", "confusion.png")
MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit


def require_mlflow() -> Any:
    """The mlflow package, or one line saying how to install it."""
    try:
        import mlflow.tracking
    except ImportError:
        raise RnnclfError("train.loggers=[mlflow] needs the mlflow extra: "
                          f"{INSTALL_HINT}, or leave mlflow out of train.loggers") from None
    return mlflow


def tracking_uri(run_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else the SQLite store in the run folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run_dir.resolve() / STORE_FILE}"


@contextlib.contextmanager
def _quiet_store() -> Iterator[None]:
    """No INFO lines from MLflow and alembic while a new SQLite store creates its tables."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    """The metrics of a metrics.jsonl record: every number but the epoch itself."""
    return {key: float(value) for key, value in record.items()
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)}


class MlflowLog:
    """One MLflow run for one rnnclf run; a context manager that ends it with its status."""

    def __init__(self, run_dir: Path, config: Config, resuming: bool,
                 log: Callable[[str], None] = print) -> None:
        mlflow = require_mlflow()
        from mlflow.entities import Metric, Param

        self._metric, self._param = Metric, Param
        self.run_dir, self.uri, self.finished = run_dir, tracking_uri(run_dir), False
        try:
            with _quiet_store():
                self.client = mlflow.tracking.MlflowClient(tracking_uri=self.uri)
                previous = self._previous_run_id() if resuming else None
                self.run_id = previous or self._new_run(config)
        except mlflow.exceptions.MlflowException as error:
            raise RnnclfError(f"MLflow at {self.uri}: {_first_line(error)}; check "
                              "$MLFLOW_TRACKING_URI and train.mlflow_experiment") from None
        if previous:
            self.client.update_run(previous, status="RUNNING")
        self._log_params(config)
        atomic_write_text(run_dir / RUN_FILE, json.dumps(
            {"tracking_uri": self.uri, "run_id": self.run_id}) + "\n")
        log(f"mlflow: run {self.run_id} ({'continued' if previous else 'new'}) at {self.uri}")

    def _previous_run_id(self) -> str | None:
        """The resumed run's MLflow run, when it was logged to the same store and is still there."""
        try:
            saved = json.loads((self.run_dir / RUN_FILE).read_text(encoding="utf-8"))
            if saved["tracking_uri"] != self.uri:
                return None
            return self.client.get_run(saved["run_id"]).info.run_id
        except Exception:  # no file, a torn file, a deleted run: start a new MLflow run
            return None

    def _new_run(self, config: Config) -> str:
        name = config.train.mlflow_experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:  # in the run folder's own store, the artifacts go into the run folder too
            location = (None if os.environ.get("MLFLOW_TRACKING_URI")
                        else (self.run_dir.resolve() / ARTIFACTS_FOLDER).as_uri())
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        run = self.client.create_run(experiment_id, run_name=config.train.name,
                                     tags={"rnnclf.run_dir": str(self.run_dir.resolve())})
        return run.info.run_id

    def _log_params(self, config: Config) -> None:
        """The resolved config; a resumed run adds only keys it lacks (MLflow refuses to change
        a logged parameter, and --resume may change a few, like train.epochs)."""
        logged = self.client.get_run(self.run_id).data.params
        params = [self._param(key, str(value)) for key, value in flat_hparams(config).items()
                  if key not in logged]
        for start in range(0, len(params), MAX_PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=params[start:start + MAX_PARAMS_PER_CALL])

    def log_epoch(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record, at its epoch as the step."""
        stamp = int(time.time() * 1000)
        metrics = [self._metric(key, value, stamp, int(record["epoch"]))
                   for key, value in _numbers(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_missing_epochs(self, records: list[dict[str, Any]]) -> None:
        """Epochs of metrics.jsonl the MLflow run lacks (a kill between last.pt and logging)."""
        logged = {metric.step for metric in self.client.get_metric_history(self.run_id,
                                                                           "val_loss")}
        for record in records:
            if isinstance(record.get("epoch"), int) and record["epoch"] not in logged:
                self.log_epoch(record)

    def finish(self) -> None:
        """The artifacts and the checkpoint's path; the run is FINISHED."""
        for name in ARTIFACT_FILES:
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        checkpoint = str((self.run_dir / "best.pt").resolve())
        self.client.set_tag(self.run_id, CHECKPOINT_TAG, checkpoint)
        self.client.log_text(self.run_id, checkpoint + "\n", "checkpoint.txt")
        self.client.set_terminated(self.run_id, "FINISHED")
        self.finished = True

    def __enter__(self) -> MlflowLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        """A run that did not finish is KILLED (a signal, Ctrl-C: resumable) or FAILED."""
        if self.finished:
            return
        interrupted = kind is not None and issubclass(kind, (KeyboardInterrupt, Interrupted))
        with contextlib.suppress(Exception):  # never hide the error that ended the run
            self.client.set_terminated(self.run_id, "KILLED" if interrupted else "FAILED")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
