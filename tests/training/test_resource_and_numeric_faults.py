"""Resource and numeric faults: unwritable run folders, a disk that fills up while saving, and a
loss that becomes NaN/inf. One line each, and the previous checkpoint stays whole."""

from __future__ import annotations

import errno
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from robustness_support import quiet, run_cli, tiny_overrides

from rnnclf.config import load_config
from rnnclf.config.resume import load_resume_config
from rnnclf.errors import Interrupted, RunFailed
from rnnclf.runs import atomic as rnnclf_io
from rnnclf.runs.atomic import read_jsonl
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.training import epoch as epoch_module
from rnnclf.training import trainer as train_module
from rnnclf.training.trainer import fit

resource = pytest.importorskip("resource")  # POSIX only (RLIMIT_FSIZE)
STEPS_PER_EPOCH = 23


def finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_checkpoint(path)["model_state"].values())


# --- folders and disks ----------------------------------------------------------------------


def test_run_folder_under_a_regular_file_is_one_line(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    runs = tmp_path / "file.txt" / "runs"  # root ignores chmod; a file in the path stops anyone
    run_cli(["train", *tiny_overrides(data_dir, runs, epochs=1)], capsys
            ).assert_one_error_line("cannot write to run folder", "train.runs_dir")


def one_epoch_then(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    args = ["train", *tiny_overrides(data_dir, tmp_path / "runs", epochs=1)]
    assert run_cli(args, capsys).code == 0
    return tmp_path / "runs" / "tiny"


@pytest.mark.parametrize("where", ["replace", "fsync", "torch-save"])
def test_disk_full_while_saving_keeps_the_previous_checkpoint(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], where: str) -> None:
    run_dir = one_epoch_then(data_dir, tmp_path, capsys)
    before = {name: (run_dir / name).read_bytes() for name in ("best.pt", "last.pt")}

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "replace":
        monkeypatch.setattr(rnnclf_io.os, "replace", full)
    elif where == "fsync":
        monkeypatch.setattr(rnnclf_io.os, "fsync", full)
    else:  # torch reports a failed write as a RuntimeError caused by the OSError
        def save(payload: Any, handle: Any) -> None:
            handle.write(b"PK\x03\x04partial")
            try:
                full()
            except OSError:  # torch chains it implicitly, as __context__
                raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")  # noqa: B904
        monkeypatch.setattr(torch, "save", save)

    result = run_cli(["train", "--resume", run_dir, "train.epochs=2"], capsys)
    line = result.assert_one_error_line("cannot write", "the previous file was left as it was")
    if where != "torch-save":
        assert "the disk is full" in line
    assert result.code == 1
    monkeypatch.undo()
    for name, content in before.items():
        assert (run_dir / name).read_bytes() == content
        load_checkpoint(run_dir / name)
    assert not list(run_dir.glob(".*.tmp"))


def test_a_real_file_size_limit_while_saving(data_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The write really fails inside torch.save (RLIMIT_FSIZE, the disk-full stand-in a test can
    set without root tricks): one line, and last.pt is still the epoch-1 file."""
    run_dir = one_epoch_then(data_dir, tmp_path, capsys)
    before = (run_dir / "last.pt").read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))
    try:
        result = run_cli(["train", "--resume", run_dir, "train.epochs=2"], capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    line = result.assert_one_error_line("cannot write", "File too large")
    assert result.code == 1
    assert (run_dir / "last.pt").read_bytes() == before
    assert str(run_dir) in line
    assert not list(run_dir.glob(".*.tmp"))


def test_eval_report_that_cannot_be_written_is_one_line(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = one_epoch_then(data_dir, tmp_path, capsys)
    monkeypatch.setattr(rnnclf_io.os, "replace",
                        lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only")))
    run_cli(["eval", run_dir / "best.pt", "--device", "cpu"], capsys
            ).assert_one_error_line("cannot write", "eval.json", "permission denied")


# --- non-finite loss ------------------------------------------------------------------------


def poison_steps(monkeypatch: pytest.MonkeyPatch, steps: set[int], value: float) -> None:
    """Make the loss of the given global steps (1-based) NaN or inf, gradients included."""
    original = epoch_module._forward_loss
    calls = {"step": 0}

    def forward(*args: Any, **kwargs: Any) -> Any:
        calls["step"] += 1
        loss, logits = original(*args, **kwargs)
        if calls["step"] in steps:
            loss = loss * value
        return loss, logits

    monkeypatch.setattr(epoch_module, "_forward_loss", forward)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_good_checkpoint(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    config = load_config(None, tiny_overrides(data_dir, tmp_path / "runs", epochs=3))
    # Step 45 is the second-to-last step of epoch 2, between the every-20-steps checks: the
    # epoch must not be evaluated or saved with the weights it left behind.
    poison_steps(monkeypatch, {STEPS_PER_EPOCH + 22}, value)
    with pytest.raises(RunFailed) as failed:
        fit(config, log=quiet)
    message = str(failed.value)
    assert f"at epoch 2, step {STEPS_PER_EPOCH + 22}" in message
    assert "optim.skip_nonfinite" in message
    run_dir = tmp_path / "runs" / "tiny"
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(run_dir / name)["progress"]["epoch"] == 1
        assert finite(run_dir / name)
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1]


def test_non_finite_loss_in_the_first_epoch_writes_no_checkpoint(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    poison_steps(monkeypatch, {3}, math.nan)
    result = run_cli(["train", *tiny_overrides(data_dir, tmp_path / "runs", epochs=2)], capsys)
    result.assert_one_error_line("the training loss became nan at epoch 1, step 3")
    assert result.code == 1
    assert not (tmp_path / "runs" / "tiny" / "best.pt").exists()
    assert not (tmp_path / "runs" / "tiny" / "last.pt").exists()


def test_skip_nonfinite_skips_the_bad_steps_and_finishes(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poison_steps(monkeypatch, {4, STEPS_PER_EPOCH + 7, STEPS_PER_EPOCH + 8}, math.nan)
    said: list[str] = []
    config = load_config(None, tiny_overrides(data_dir, tmp_path / "runs", epochs=2,
                                              **{"optim.skip_nonfinite": "true"}))
    summary = fit(config, log=said.append)
    assert summary["epochs_run"] == 2
    assert [r.get("skipped_steps") for r in summary["epochs"]] == [1, 2]
    assert any("skipped 2 step(s)" in line for line in said)
    run_dir = tmp_path / "runs" / "tiny"
    assert finite(run_dir / "best.pt") and finite(run_dir / "last.pt")
    assert all(math.isfinite(r["train_loss"]) for r in summary["epochs"])


def test_skip_nonfinite_resumes_exactly(data_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipped steps still use up their batch, so an interrupted run resumes in step."""
    runs = tmp_path / "runs"
    extra = {"optim.skip_nonfinite": "true"}
    poison_steps(monkeypatch, {4, 30}, math.nan)
    straight = fit(load_config(None, tiny_overrides(data_dir, runs, name="a", epochs=2, **extra)),
                   log=quiet)
    monkeypatch.undo()
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    poison_steps(monkeypatch, {4}, math.nan)
    original = epoch_module._forward_loss

    def stop_at_10(*args: Any, **kwargs: Any) -> Any:
        if train_module_calls.setdefault("n", 0) == 9:
            os.kill(os.getpid(), signal.SIGINT)
        train_module_calls["n"] += 1
        return original(*args, **kwargs)

    train_module_calls: dict[str, int] = {}
    monkeypatch.setattr(epoch_module, "_forward_loss", stop_at_10)
    with pytest.raises(Interrupted):
        fit(load_config(None, tiny_overrides(data_dir, runs, name="b", epochs=2, **extra)),
            log=quiet)
    monkeypatch.undo()
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    poison_steps(monkeypatch, {30 - 10}, math.nan)  # the resumed process counts from step 11
    resumed = fit(load_resume_config(runs / "b", []), resume_dir=runs / "b", log=quiet)
    drop = {"seconds", "samples_per_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed["epochs"]] \
        == [{k: v for k, v in r.items() if k not in drop} for r in straight["epochs"]]


def test_weights_that_turn_nan_on_an_epochs_last_step_are_never_saved(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loss of the last step was still finite, but the update made the weights NaN: the
    epoch's evaluation cannot be trusted and neither best.pt nor last.pt may take them."""
    original = train_module.build_optimizer

    def build_optimizer(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = original(*args, **kwargs)
        step, calls = optimizer.step, {"n": 0}

        def poisoned_step(*a: Any, **k: Any) -> Any:
            result = step(*a, **k)
            calls["n"] += 1
            if calls["n"] == 2 * STEPS_PER_EPOCH:
                with torch.no_grad():
                    optimizer.param_groups[0]["params"][0].fill_(math.nan)
            return result

        optimizer.step = poisoned_step  # type: ignore[method-assign]
        return optimizer

    monkeypatch.setattr(train_module, "build_optimizer", build_optimizer)
    config = load_config(None, tiny_overrides(data_dir, tmp_path / "runs", epochs=3))
    with pytest.raises(RunFailed, match="weights became NaN/inf at epoch 2"):
        fit(config, log=quiet)
    run_dir = tmp_path / "runs" / "tiny"
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(run_dir / name)["progress"]["epoch"] == 1
        assert finite(run_dir / name)
