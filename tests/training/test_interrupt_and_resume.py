"""Interruption and resume: SIGINT/SIGTERM stop cleanly, a resumed run ends exactly where an
uninterrupted one does (CPU, same seed), and a run folder is never silently reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from robustness_support import (
    quiet,
    run_cli,
    subprocess_env,
    tiny_overrides,
)

from rnnclf.config import load_config
from rnnclf.config.resume import load_resume_config
from rnnclf.errors import Interrupted, RnnclfError, StoppedAtOnce
from rnnclf.runs.atomic import read_jsonl
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.training import epoch as epoch_module
from rnnclf.training import trainer as train_module
from rnnclf.training.trainer import fit

TIMING_KEYS = {"seconds", "samples_per_s"}
STEPS_PER_EPOCH = 23  # 180 training rows in batches of 8


def signal_at_steps(monkeypatch: pytest.MonkeyPatch, when: dict[int, list[int]]) -> None:
    """Deliver real signals to this process from inside the forward pass of the given global
    steps (1-based), i.e. in the middle of a training step, through the real handler."""
    original = epoch_module._forward_loss
    calls = {"step": 0}

    def forward(*args: Any, **kwargs: Any) -> Any:
        calls["step"] += 1
        for signum in when.get(calls["step"], []):
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "_forward_loss", forward)


def comparable(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS}
            for record in read_jsonl(run_dir / "metrics.jsonl")]


def assert_same_weights(a: Path, b: Path) -> None:
    state_a, state_b = load_checkpoint(a)["model_state"], load_checkpoint(b)["model_state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def run_uninterrupted(data_dir: Path, runs: Path, epochs: int = 3) -> Path:
    config = load_config(None, tiny_overrides(data_dir, runs, name="straight", epochs=epochs))
    fit(config, log=quiet)
    return runs / "straight"


@pytest.mark.parametrize("stops", [
    [7],  # mid-epoch
    [STEPS_PER_EPOCH],  # on the last step of an epoch, before its evaluation
    [5, STEPS_PER_EPOCH + 9, 2 * STEPS_PER_EPOCH + 1],  # three times, in three epochs
], ids=["mid-epoch", "epoch-end", "three-times"])
def test_interrupted_then_resumed_run_matches_an_uninterrupted_one(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stops: list[int]) -> None:
    runs = tmp_path / "runs"
    straight = run_uninterrupted(data_dir, runs)

    config = load_config(None, tiny_overrides(data_dir, runs, name="stopped", epochs=3))
    run_dir = runs / "stopped"
    # Each resume restarts the step count of the patched forward, so give steps relative to it.
    done = 0
    for stop_step in stops:
        signal_at_steps(monkeypatch, {stop_step - done: [signal.SIGINT]})
        with pytest.raises(Interrupted) as stopped:
            if done == 0:
                fit(config, log=quiet)
            else:
                fit(load_resume_config(run_dir, []), resume_dir=run_dir, log=quiet)
        assert stopped.value.exit_code == 130
        assert f"--resume {run_dir}" in str(stopped.value)
        progress = load_checkpoint(run_dir / "last.pt")["progress"]
        assert progress["global_step"] == stop_step  # the step in flight was finished, then saved
        done = stop_step
        monkeypatch.undo()
        monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    summary = fit(load_resume_config(run_dir, []), resume_dir=run_dir, log=quiet)

    assert summary["epochs_run"] == 3
    assert comparable(run_dir) == comparable(straight)
    assert_same_weights(run_dir / "last.pt", straight / "last.pt")
    assert_same_weights(run_dir / "best.pt", straight / "best.pt")
    assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 3 * STEPS_PER_EPOCH


def test_sigterm_during_evaluation_stops_after_saving_the_whole_epoch(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    original = train_module.evaluate
    calls = {"n": 0}

    def evaluate(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", evaluate)
    config = load_config(None, tiny_overrides(data_dir, runs, epochs=3))
    with pytest.raises(Interrupted) as stopped:
        fit(config, log=quiet)
    assert stopped.value.exit_code == 143
    run_dir = runs / "tiny"
    assert load_checkpoint(run_dir / "last.pt")["progress"]["epoch"] == 1
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back


def test_second_signal_leaves_at_once_and_every_file_stays_loadable(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    # Two signals inside one step of epoch 2: the first asks for a graceful stop, the second
    # leaves from inside the forward pass, before anything of epoch 2 is saved.
    signal_at_steps(monkeypatch, {STEPS_PER_EPOCH + 3: [signal.SIGINT, signal.SIGINT]})
    config = load_config(None, tiny_overrides(data_dir, runs, epochs=3))
    with pytest.raises(StoppedAtOnce) as stopped:
        fit(config, log=quiet)
    assert stopped.value.exit_code == 130
    run_dir = runs / "tiny"
    assert load_checkpoint(run_dir / "last.pt")["progress"]["epoch"] == 1
    assert load_checkpoint(run_dir / "best.pt")["progress"]["epoch"] == 1
    assert not list(run_dir.glob(".*.tmp"))
    monkeypatch.undo()
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    summary = fit(load_resume_config(run_dir, []), resume_dir=run_dir, log=quiet)
    assert summary["epochs_run"] == 3
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3]


def test_second_signal_while_saving_keeps_the_previous_checkpoint(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that lands while last.pt is half written: the old last.pt survives whole."""
    runs = tmp_path / "runs"
    config = load_config(None, tiny_overrides(data_dir, runs, epochs=1))
    fit(config, log=quiet)
    run_dir = runs / "tiny"
    before = (run_dir / "last.pt").read_bytes()

    real_save = torch.save

    def save_then_interrupt(payload: Any, handle: Any) -> None:
        real_save(payload, handle)
        handle.truncate(handle.tell() // 2)  # half a file on disk...
        raise StoppedAtOnce(130)  # ...and the second Ctrl-C arrives

    monkeypatch.setattr(torch, "save", save_then_interrupt)
    with pytest.raises(StoppedAtOnce):
        fit(load_resume_config(run_dir, ["train.epochs=2"]), resume_dir=run_dir, log=quiet)
    assert (run_dir / "last.pt").read_bytes() == before
    assert not list(run_dir.glob(".*.tmp"))
    load_checkpoint(run_dir / "best.pt")


def test_exception_inside_the_progress_bar_leaves_files_loadable(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    config = load_config(None, tiny_overrides(data_dir, runs, epochs=3))
    calls = {"n": 0}

    class Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def update(self, n: int = 1) -> None:
            calls["n"] += 1
            if calls["n"] == STEPS_PER_EPOCH + 5:
                raise OSError(5, "Input/output error")  # e.g. the terminal went away

        def set_postfix(self, **kwargs: Any) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(epoch_module, "tqdm", Bar)
    with pytest.raises(OSError):
        fit(config, log=quiet)
    run_dir = runs / "tiny"
    assert load_checkpoint(run_dir / "last.pt")["progress"]["epoch"] == 1
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1]


def test_resume_repairs_metrics_after_a_kill_between_checkpoint_and_log_line(
        data_dir: Path, tmp_path: Path) -> None:
    """kill -9 after last.pt of epoch 2 was saved but before its metrics line (or halfway
    through writing it): the resumed run's metrics.jsonl still has each epoch exactly once."""
    runs = tmp_path / "runs"
    for name, keep in (("torn", 0.5), ("missing", 0.0)):
        fit(load_config(None, tiny_overrides(data_dir, runs, name=name, epochs=2)), log=quiet)
        run_dir = runs / name
        written = read_jsonl(run_dir / "metrics.jsonl")
        lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
        # Epoch 2's line is torn (or missing); a killed save left its temp file behind.
        (run_dir / "metrics.jsonl").write_text(lines[0] + lines[1][: int(len(lines[1]) * keep)])
        (run_dir / ".last.pt.k1ll3d.tmp").write_bytes(b"\x00" * 10)
        fit(load_resume_config(run_dir, ["train.epochs=3"]), resume_dir=run_dir, log=quiet)
        records = read_jsonl(run_dir / "metrics.jsonl")
        assert [r["epoch"] for r in records] == [1, 2, 3]
        assert records[:2] == written
        assert (run_dir / "metrics.jsonl").read_text().count("\n") == 3
        assert not list(run_dir.glob(".*.tmp"))


def test_existing_run_folder_is_refused_without_resume_or_overwrite(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    args = ["train", *tiny_overrides(data_dir, runs, epochs=1)]
    assert run_cli(args, capsys).code == 0
    before = (runs / "tiny" / "last.pt").read_bytes()
    line = run_cli(args, capsys).assert_one_error_line("already holds a run", "--resume",
                                                       "--overwrite")
    assert str(runs / "tiny") in line
    assert (runs / "tiny" / "last.pt").read_bytes() == before
    assert run_cli([*args, "--overwrite"], capsys).code == 0
    result = run_cli(["train", "--resume", runs / "tiny", "train.epochs=2"], capsys)
    assert result.code == 0, result.stderr
    assert [r["epoch"] for r in read_jsonl(runs / "tiny" / "metrics.jsonl")] == [1, 2]
    run_cli(["train", "--resume", runs / "tiny", "model.hidden_size=4"], capsys
            ).assert_one_error_line("cannot change")
    run_cli(["train", "--resume", tmp_path / "nowhere"], capsys
            ).assert_one_error_line("no last.pt")


def test_resume_of_a_finished_run_says_how_to_train_longer(
        data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fit(load_config(None, tiny_overrides(data_dir, runs, epochs=1)), log=quiet)
    said: list[str] = []
    summary = fit(load_resume_config(runs / "tiny", []), resume_dir=runs / "tiny",
                  log=said.append)
    assert summary["epochs_run"] == 1
    assert any("already finished 1 epochs" in line and "train.epochs" in line for line in said)


def test_real_sigterm_from_outside_then_resume(data_dir: Path, tmp_path: Path) -> None:
    """The console entry point in its own process, stopped by a SIGTERM sent from outside."""
    runs = tmp_path / "runs"
    args = [*tiny_overrides(data_dir, runs, name="outside", epochs=200), "train.progress=true"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from rnnclf.cli.app import main; main()", "train", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(tmp_path),
        cwd=tmp_path, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until training is under way
            if line.startswith("epoch 1:"):
                break
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: stopped by SIGTERM"), stderr
    assert f"rnnclf train --resume {runs / 'outside'}" in last
    progress = load_checkpoint(runs / "outside" / "last.pt")["progress"]
    assert 1 <= progress["epoch"] < 200
    config = load_resume_config(runs / "outside", [f"train.epochs={progress['epoch'] + 1}",
                                                   "train.progress=false"])
    fit(config, resume_dir=runs / "outside", log=quiet)
    epochs = [r["epoch"] for r in read_jsonl(runs / "outside" / "metrics.jsonl")]
    assert epochs == list(range(1, progress["epoch"] + 2))


KILL_DURING_SAVE = """
import os, signal, sys, torch
from rnnclf.cli.app import main
real_save, calls = torch.save, {"n": 0}
def save(payload, handle, *args, **kwargs):
    calls["n"] += 1
    if calls["n"] == int(os.environ["KILL_AT_SAVE"]):
        real_save(payload, handle)
        handle.truncate(handle.tell() // 2)
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 with half a checkpoint on disk
    return real_save(payload, handle, *args, **kwargs)
torch.save = save
sys.argv = ["rnnclf", *sys.argv[1:]]
main()
"""


def test_kill_9_in_the_middle_of_writing_a_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    """A real SIGKILL while a checkpoint is half written: best.pt and last.pt are whole, the
    metrics are readable, and a resume cleans up and finishes the run."""
    runs = tmp_path / "runs"
    env = subprocess_env(tmp_path)
    # Saves: the data cache, then per epoch best.pt (when better) and last.pt. Die in the 4th:
    # at least one full last.pt exists by then.
    env["KILL_AT_SAVE"] = "4"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, "train",
         *tiny_overrides(data_dir, runs, epochs=3)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = runs / "tiny"
    assert list(run_dir.glob(".*.pt.*.tmp")), "the kill should have left a torn temp file"
    last = load_checkpoint(run_dir / "last.pt")
    load_checkpoint(run_dir / "best.pt")
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] \
        == list(range(1, last["progress"]["epoch"] + 1))
    yaml_text = (run_dir / "config.yaml").read_text()
    assert "hidden_size: 8" in yaml_text
    summary = fit(load_resume_config(run_dir, []), resume_dir=run_dir, log=quiet)
    assert summary["epochs_run"] == 3
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3]
    assert not list(run_dir.glob(".*.tmp"))


def test_loading_resume_config_from_a_broken_last_pt_is_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(RnnclfError, match="not a readable rnnclf checkpoint"):
        load_resume_config(run_dir, [])



def test_resume_after_the_training_data_changed_is_refused(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    fit(load_config(None, tiny_overrides(data_dir, runs, epochs=1)), log=quiet)
    with (data_dir / "train.csv").open("a") as handle:
        handle.write('"1","Brand new words","appear zebra quokka zebra quokka"\n')
    run_cli(["train", "--resume", runs / "tiny", "train.epochs=2"], capsys
            ).assert_one_error_line("training data changed", "cannot be resumed")


def test_resume_from_an_edited_last_pt_is_one_line(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    fit(load_config(None, tiny_overrides(data_dir, runs, epochs=1)), log=quiet)
    payload = load_checkpoint(runs / "tiny" / "last.pt")
    payload["optimizer_state"] = {"state": {}, "param_groups": []}
    torch.save(payload, runs / "tiny" / "last.pt")
    run_cli(["train", "--resume", runs / "tiny", "train.epochs=2"], capsys
            ).assert_one_error_line("cannot be resumed")
