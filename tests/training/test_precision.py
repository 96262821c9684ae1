"""train.precision: fp16 and bf16 where the device has them, one clear line where it has not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from agnews_support import make_keyword_agnews
from tiny_support import tiny_config

import rnnclf.device
from rnnclf.config.resume import load_resume_config
from rnnclf.device import cpu_has_native_bf16, make_grad_scaler
from rnnclf.errors import RnnclfError
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.training.trainer import fit


def test_fp16_needs_cuda() -> None:
    with pytest.raises(RnnclfError, match="fp16 needs a CUDA"):
        make_grad_scaler("fp16", torch.device("cpu"))
    if cpu_has_native_bf16():
        assert make_grad_scaler("bf16", torch.device("cpu")) is None
    else:
        with pytest.raises(RnnclfError, match="bf16 needs a CPU with native bf16"):
            make_grad_scaler("bf16", torch.device("cpu"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_the_cpu_cannot_train_in_is_refused_before_the_run_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    monkeypatch.setattr(rnnclf.device, "cpu_has_native_bf16", lambda: False)
    data = make_keyword_agnews(tmp_path / "data")
    config = tiny_config(data, tmp_path / "runs")
    config.train.device = "cpu"
    config.train.precision = precision
    with pytest.raises(RnnclfError, match=f"{precision} needs a C"):
        fit(config, log=lambda *_: None)
    assert not (tmp_path / "runs" / "tiny").exists()


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_trains_on_the_cpu(tmp_path: Path) -> None:
    data = make_keyword_agnews(tmp_path / "data")
    config = tiny_config(data, tmp_path / "runs")
    config.train.epochs = 1
    config.train.precision = "bf16"
    summary = fit(config, log=lambda *_: None)
    assert summary["epochs"][0]["train_loss"] == summary["epochs"][0]["train_loss"]  # not NaN


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("sparse", [True, False])
def test_cuda_training_in_each_precision(tmp_path: Path, precision: str, sparse: bool) -> None:
    data = make_keyword_agnews(tmp_path / "data")
    config = tiny_config(data, tmp_path / "runs", sparse_embedding=sparse)
    config.train.device = "cuda"
    config.train.precision = precision
    summary = fit(config, log=lambda *_: None)
    assert summary["device"].startswith("cuda")
    losses = [epoch["train_loss"] for epoch in summary["epochs"]]
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0]
    payload = load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")
    assert ("scaler_state" in payload) == (precision == "fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_run_resumes(tmp_path: Path) -> None:
    data = make_keyword_agnews(tmp_path / "data")
    config = tiny_config(data, tmp_path / "runs")
    config.train.device, config.train.precision, config.train.epochs = "cuda", "fp16", 1
    fit(config, log=lambda *_: None)
    run_dir = tmp_path / "runs" / "tiny"
    summary = fit(load_resume_config(run_dir, ["train.epochs=2"]), resume_dir=run_dir,
                  log=lambda *_: None)
    assert summary["epochs_run"] == 2
