"""--overwrite keeps the previous run until the new one has its first best.pt; kill -9 leaves
nothing a restart does not clean up."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from robustness_support import quiet, subprocess_env, tiny_overrides, write_dataset

from rnnclf.config import load_config
from rnnclf.config.resume import load_resume_config
from rnnclf.errors import Interrupted, RnnclfError, RunFailed
from rnnclf.inference.predictor import Predictor
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.runs.folder import DISCARDED, SET_ASIDE, claim_run_folder
from rnnclf.runs.lock import RunFolderBusy, RunLock
from rnnclf.training import state as state_module
from rnnclf.training.trainer import fit

PREVIOUS = ("config.yaml", "metrics.jsonl", "last.pt", "summary.json")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return write_dataset(tmp_path / "data", train_rows=400)


def previous_run(data_dir: Path, runs: Path) -> dict[str, bytes]:
    """A finished 1-epoch run in runs/x; returns its files' bytes."""
    fit(load_config(None, tiny_overrides(data_dir, runs, name="x", epochs=1,
                                         **{"model.hidden_size": 6})), log=quiet)
    return {name: (runs / "x" / name).read_bytes() for name in ("best.pt", *PREVIOUS)}


def assert_previous_run_in_place(run_dir: Path, before: dict[str, bytes]) -> None:
    for name, content in before.items():
        assert (run_dir / name).read_bytes() == content, name
    assert not (run_dir / SET_ASIDE).exists() and not (run_dir / DISCARDED).exists()
    assert not list(run_dir.glob(".*.tmp"))


def fail_at_first_best(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """The new run's first best.pt save raises `error` (disk full, Ctrl-C ...)."""
    real_save = state_module.save_checkpoint

    def save(path: Path, payload: Any) -> None:
        if Path(path).name == "best.pt":
            raise error
        real_save(path, payload)

    monkeypatch.setattr(state_module, "save_checkpoint", save)


@pytest.mark.parametrize("error", [
    RunFailed("cannot write best.pt: the disk is full"),
    Interrupted("stopped by SIGINT at epoch 1, step 25; last.pt saved. Resume with: rnnclf "
                "train --resume x"),
], ids=["disk-full", "ctrl-c"])
def test_a_new_run_failing_before_its_first_best_puts_the_previous_run_back(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        error: Exception) -> None:
    runs = tmp_path / "runs"
    before = previous_run(data_dir, runs)
    fail_at_first_best(monkeypatch, error)
    with pytest.raises(type(error)) as failed:
        fit(load_config(None, tiny_overrides(data_dir, runs, name="x", epochs=2)),
            overwrite=True, log=quiet)
    assert_previous_run_in_place(runs / "x", before)
    if isinstance(error, Interrupted):  # the hint says what happened, not "resume"
        message = str(failed.value)
        assert message.startswith("stopped by SIGINT at epoch 1, step 25")
        assert "previous run" in message and "put back" in message and "--resume" not in message
        assert failed.value.exit_code == 130
    monkeypatch.undo()
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    # The previous run is whole again: it resumes as before.
    summary = fit(load_resume_config(runs / "x", ["train.epochs=2"]), resume_dir=runs / "x",
                  log=quiet)
    assert summary["epochs_run"] == 2


def test_overwrite_replaces_the_previous_run_once_the_new_one_has_a_best(
        data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    before = previous_run(data_dir, runs)
    (runs / "x" / "member_1").mkdir()  # left by an earlier ensemble of the same name
    fit(load_config(None, tiny_overrides(data_dir, runs, name="x", epochs=2)), overwrite=True,
        log=quiet)
    run_dir = runs / "x"
    assert load_checkpoint(run_dir / "best.pt")["config"]["model"]["hidden_size"] == 8
    for name in PREVIOUS:
        assert (run_dir / name).read_bytes() != before[name], name
    assert not (run_dir / SET_ASIDE).exists() and not (run_dir / DISCARDED).exists()
    assert not (run_dir / "member_1").exists()


OVERWRITE_AND_KILL = """
import os, signal, sys, torch
from rnnclf.cli.app import main
real_save = torch.save
def save(payload, handle, *args, **kwargs):
    target = os.readlink(f"/proc/self/fd/{handle.fileno()}") if hasattr(handle, "fileno") else ""
    if "/.best.pt." in target:  # the new run's first best.pt, killed half written
        real_save(payload, handle)
        handle.truncate(handle.tell() // 2)
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(payload, handle, *args, **kwargs)
torch.save = save
sys.argv = ["rnnclf", *sys.argv[1:]]
main()
"""


def test_kill_9_in_the_first_epoch_after_overwrite_keeps_the_previous_model(
        data_dir: Path, tmp_path: Path) -> None:
    """kill -9 of `train --overwrite` before its first best.pt: the old best.pt loads all along,
    and the next process that claims the folder puts the old run back and clears the temps."""
    runs = tmp_path / "runs"
    before = previous_run(data_dir, runs)
    run_dir = runs / "x"
    killed = subprocess.run(
        [sys.executable, "-c", OVERWRITE_AND_KILL, "train", "--overwrite",
         *tiny_overrides(data_dir, runs, name="x", epochs=2)],
        capture_output=True, text=True, env=subprocess_env(tmp_path), cwd=tmp_path, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run_dir / "best.pt").read_bytes() == before["best.pt"]
    assert Predictor(run_dir / "best.pt", "cpu").predict(["shares profit bank"])
    assert list(run_dir.glob(".best.pt.*.tmp")), "the kill should have left a torn temp file"
    assert (run_dir / SET_ASIDE).is_dir()  # the previous run, waiting to be put back
    # The restart (without --overwrite) finds the previous run whole again and refuses.
    with pytest.raises(RnnclfError, match="already holds a run"):
        fit(load_config(None, tiny_overrides(data_dir, runs, name="x", epochs=2)), log=quiet)
    assert_previous_run_in_place(run_dir, before)


PREDICT_LOOP_MIN = 5


def test_predict_in_a_loop_during_train_overwrite_never_fails(
        data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    previous_run(data_dir, runs)
    checkpoint = runs / "x" / "best.pt"
    training = subprocess.Popen(
        [sys.executable, "-m", "rnnclf", "train", "--overwrite",
         *tiny_overrides(data_dir, runs, name="x", epochs=2)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(tmp_path),
        cwd=tmp_path)
    hidden_sizes = []
    try:
        while training.poll() is None or len(hidden_sizes) < PREDICT_LOOP_MIN:
            predictor = Predictor(checkpoint, "cpu")  # raises if best.pt is missing or torn
            assert predictor.predict(["football coach season"])[0].labels
            hidden_sizes.append(load_checkpoint(checkpoint)["config"]["model"]["hidden_size"])
        _, stderr = training.communicate(timeout=180)
    finally:
        if training.poll() is None:
            training.kill()
            training.wait()
    assert training.returncode == 0, stderr
    assert hidden_sizes[0] == 6 and hidden_sizes[-1] == 8  # the old model, then the new one
    assert not (runs / "x" / SET_ASIDE).exists()


def test_resume_is_refused_while_another_process_trains_in_the_folder(
        data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    before = previous_run(data_dir, runs)
    holder = RunLock(runs / "x")  # stands for a training in another process
    holder.acquire()
    try:
        with pytest.raises(RunFolderBusy, match="in use by another training"):
            fit(load_resume_config(runs / "x", ["train.epochs=2"]), resume_dir=runs / "x",
                log=quiet)
        with pytest.raises(RunFolderBusy), claim_run_folder(runs / "x", overwrite=True):
            pass
    finally:
        holder.release()
    assert_previous_run_in_place(runs / "x", before)  # the refused --overwrite moved nothing
