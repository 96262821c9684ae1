"""train.loggers=[mlflow]: the run read back through MLflow's own client, from a local store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tiny_support import write_weather_csv

from rnnclf.config import load_config
from rnnclf.config.resume import load_resume_config
from rnnclf.errors import RnnclfError
from rnnclf.runs.atomic import read_jsonl
from rnnclf.training.state import enabled_loggers
from rnnclf.training.trainer import fit

TINY = ["data.dataset=csv", "data.min_freq=1", "data.val_fraction=0.2",
        "model.embedding_dim=8", "model.pretrained_embeddings=", "model.hidden_size=8",
        "train.batch_size=8", "train.epochs=2", "train.progress=false",
        "train.early_stopping_patience=0", "train.num_threads=1"]


def tiny_config(tmp_path: Path, *overrides: str) -> object:
    write_weather_csv(tmp_path / "train.csv", 120)
    return load_config(None, [*TINY, f"data.dir={tmp_path}", f"train.runs_dir={tmp_path}/runs",
                              *overrides])


def test_mlflow_run_in_the_run_folder_and_resume(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tracking = pytest.importorskip("mlflow.tracking")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tiny_config(tmp_path, "train.loggers=[mlflow]", "train.name=ml",
                         "train.mlflow_experiment=tiny-exp")
    fit(config, log=lambda message: None)
    run_dir = tmp_path / "runs" / "ml"
    saved = json.loads((run_dir / "mlflow_run.json").read_text())
    assert saved["tracking_uri"] == f"sqlite:///{run_dir.resolve()}/mlflow.db"
    client = tracking.MlflowClient(tracking_uri=saved["tracking_uri"])
    run = client.get_run(saved["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "ml"
    assert client.get_experiment(run.info.experiment_id).name == "tiny-exp"
    params = run.data.params
    assert params["model.cell"] == "gru" and params["model.hidden_size"] == "8"
    assert params["train.loggers"] == "['mlflow']" and params["data.dataset"] == "csv"
    records = read_jsonl(run_dir / "metrics.jsonl")
    history = client.get_metric_history(saved["run_id"], "val_acc")
    assert [(m.step, m.value) for m in history] == [(r["epoch"], r["val_acc"]) for r in records]
    assert [m.step for m in client.get_metric_history(saved["run_id"], "train_loss")] == [1, 2]
    artifacts = {item.path for item in client.list_artifacts(saved["run_id"])}
    assert {"config.yaml", "summary.json", "checkpoint.txt"} <= artifacts
    assert not any(path.endswith(".pt") for path in artifacts)  # the checkpoint stays local
    checkpoint = str((run_dir / "best.pt").resolve())
    assert run.data.tags["rnnclf.checkpoint"] == checkpoint
    local = Path(client.download_artifacts(saved["run_id"], "checkpoint.txt", str(tmp_path)))
    assert local.read_text().strip() == checkpoint
    # --resume goes on in the same MLflow run, epoch 3 beside 1 and 2
    fit(load_resume_config(run_dir, ["train.epochs=3"]), resume_dir=run_dir,
        log=lambda message: None)
    assert json.loads((run_dir / "mlflow_run.json").read_text())["run_id"] == saved["run_id"]
    steps = [m.step for m in client.get_metric_history(saved["run_id"], "val_acc")]
    assert steps == [1, 2, 3]
    assert client.get_run(saved["run_id"]).info.status == "FINISHED"


def test_tracking_uri_from_the_environment(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """$MLFLOW_TRACKING_URI wins: here MLflow's plain-file store (opted in, as MLflow asks)."""
    tracking = pytest.importorskip("mlflow.tracking")
    store = (tmp_path / "shared_store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for name in ("one", "two"):
        fit(tiny_config(tmp_path, "train.loggers=[tensorboard,mlflow]", f"train.name={name}",
                        "train.epochs=1"), log=lambda message: None)
    client = tracking.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("rnnclf")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["one", "two"]
    assert not (tmp_path / "runs" / "one" / "mlflow.db").exists()
    assert any((tmp_path / "runs" / "one" / "tb").glob("events.out.tfevents.*"))


def test_missing_extra_is_one_line_before_any_run_folder(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    config = tiny_config(tmp_path, "train.loggers=[mlflow]", "train.name=nope")
    with pytest.raises(RnnclfError, match=r"^train.loggers=\[mlflow\] needs the mlflow extra: "
                                          r"pip install 'rnnclf\[mlflow\]'"):
        fit(config, log=lambda message: None)
    assert not (tmp_path / "runs" / "nope").exists()


def test_loggers_list_and_the_tensorboard_switch() -> None:
    assert enabled_loggers(load_config(None, [])) == []
    assert enabled_loggers(load_config(None, ["train.tensorboard=true"])) == ["tensorboard"]
    both = load_config(None, ["train.loggers=[mlflow, tensorboard]", "train.tensorboard=true"])
    assert enabled_loggers(both) == ["mlflow", "tensorboard"]
    assert load_config(None, ["train.loggers=mlflow"]).train.loggers == ["mlflow"]
    with pytest.raises(RnnclfError, match=r"train.loggers: 'wandb' is not allowed; choose one "
                                          "of tensorboard, mlflow"):
        load_config(None, ["train.loggers=[mlflow, wandb]"])


def test_resume_fills_missing_epochs_and_an_interrupt_ends_killed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracking = pytest.importorskip("mlflow.tracking")
    from rnnclf.errors import Interrupted
    from rnnclf.training.mlflow_logger import MlflowLog

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    config = load_config(None, ["train.loggers=[mlflow]", "train.name=unit"])
    records = [{"epoch": 1, "val_loss": 0.9, "val_acc": 0.5, "lr": 0.1},
               {"epoch": 2, "val_loss": 0.7, "val_acc": 0.6, "lr": 0.05}]
    first = MlflowLog(tmp_path, config, resuming=False, log=lambda message: None)
    with pytest.raises(Interrupted), first:
        first.log_epoch(records[0])  # killed before epoch 2 reached MLflow
        raise Interrupted("stopped")
    client = tracking.MlflowClient(tracking_uri=(tmp_path / "store").as_uri())
    assert client.get_run(first.run_id).info.status == "KILLED"
    with MlflowLog(tmp_path, config, resuming=True, log=lambda message: None) as again:
        assert again.run_id == first.run_id
        again.log_missing_epochs(records)
        again.finish()
    history = client.get_metric_history(first.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.6)]
    assert client.get_run(first.run_id).info.status == "FINISHED"
    # another store: the saved run id means nothing there, so a new run starts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "other").as_uri())
    fresh = MlflowLog(tmp_path, config, resuming=True, log=lambda message: None)
    assert fresh.run_id != first.run_id
