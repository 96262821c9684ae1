"""train.tensorboard: scalars and hyperparameters, read back with TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_support import write_weather_csv

from rnnclf.config import load_config
from rnnclf.errors import RnnclfError
from rnnclf.runs.atomic import read_jsonl
from rnnclf.training.epoch import LOG_EVERY
from rnnclf.training.trainer import fit

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_tensorboard_scalars_and_hparams(tmp_path: Path) -> None:
    write_weather_csv(tmp_path / "train.csv", 240)
    config = load_config(None, [
        "data.dataset=csv", f"data.dir={tmp_path}", "data.min_freq=1", "data.val_fraction=0.2",
        "model.embedding_dim=8", "model.pretrained_embeddings=",
        "model.hidden_size=8", "train.batch_size=8", "train.epochs=2",
        "train.progress=false", "train.tensorboard=true", f"train.runs_dir={tmp_path}/runs",
        "train.name=tb", "train.early_stopping_patience=0", "train.num_threads=1"])
    fit(config, log=lambda message: None)
    run = tmp_path / "runs" / "tb"
    records = read_jsonl(run / "metrics.jsonl")
    accumulator = event_accumulator.EventAccumulator(str(run / "tb"))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"step/loss", "step/accuracy", "step/lr", "step/samples_per_s", "epoch/train_loss",
            "epoch/val_loss", "epoch/train_acc", "epoch/val_acc", "epoch/lr",
            "epoch/samples_per_s"} <= tags
    val_acc = accumulator.Scalars("epoch/val_acc")
    assert [event.step for event in val_acc] == [1, 2]
    assert [event.value for event in val_acc] == pytest.approx([r["val_acc"] for r in records])
    # 24 steps per epoch: a step log every LOG_EVERY steps and at each epoch's last step.
    steps = [event.step for event in accumulator.Scalars("step/loss")]
    per_epoch = records[0]["step"]
    assert steps == [LOG_EVERY, per_epoch, per_epoch + LOG_EVERY, 2 * per_epoch]
    assert all(0.0 <= event.value <= 1.0 for event in accumulator.Scalars("step/accuracy"))
    hparams = accumulator.PluginTagToContent("hparams")
    from tensorboard.plugins.hparams import plugin_data_pb2

    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/experiment"]).experiment
    names = {info.name for info in experiment.hparam_infos}
    assert {"model.cell", "optim.lr", "train.batch_size", "data.dataset"} <= names
    assert {metric.name.tag for metric in experiment.metric_infos} == {"epoch/val_acc",
                                                                      "epoch/val_loss"}
    session = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["model.cell"].string_value == "gru"
    assert session.hparams["train.batch_size"].number_value == 8


def test_missing_tensorboard_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from rnnclf.training.tensorboard import TensorBoardLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(RnnclfError, match=r"rnnclf\[tensorboard\].*train.tensorboard=false"):
        TensorBoardLog(tmp_path, load_config(None, []))
