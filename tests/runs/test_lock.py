"""One training per run folder: the lock refuses a second owner at once, naming the holder, and
dies with its process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from robustness_support import subprocess_env, tiny_overrides, write_dataset

from rnnclf.errors import RnnclfError
from rnnclf.runs.folder import claim_run_folder
from rnnclf.runs.lock import LOCK_FILE, RunFolderBusy, RunLock

RACE_ROUNDS = 30


def test_a_second_lock_is_refused_with_the_holders_pid_and_host(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    first.acquire()
    with pytest.raises(RunFolderBusy) as refused:
        second.acquire()
    message = str(refused.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert str(tmp_path) in message and "train.name" in message and "\n" not in message
    first.release()
    second.acquire()  # free again once released
    second.release()


def _race_claim(run_dir: str, start: multiprocessing.synchronize.Barrier,
                loser_done: multiprocessing.synchronize.Event,
                results: multiprocessing.Queue) -> None:
    """One contender: claim the folder as a new run; the winner holds it until the loser has
    answered, so the loser always meets a live holder rather than a finished run."""
    start.wait()
    try:
        with claim_run_folder(Path(run_dir)) as folder:
            (folder.path / "config.yaml").write_text(f"pid {os.getpid()}\n")
            results.put(("won", os.getpid(), ""))
            loser_done.wait(timeout=30)
    except RnnclfError as error:
        results.put(("lost", os.getpid(), str(error)))
        loser_done.set()


def test_two_trainings_racing_for_one_folder_exactly_one_wins(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(RACE_ROUNDS):
        run_dir = tmp_path / f"race{round_}"
        start, loser_done, results = context.Barrier(2), context.Event(), context.Queue()
        racers = [context.Process(target=_race_claim, args=(str(run_dir), start, loser_done,
                                                             results)) for _ in range(2)]
        for racer in racers:
            racer.start()
        outcomes = sorted(results.get(timeout=60) for _ in racers)
        for racer in racers:
            racer.join(timeout=60)
        assert [outcome[0] for outcome in outcomes] == ["lost", "won"], outcomes
        (_, _, message), (_, winner, _) = outcomes
        assert f"in use by another training (pid {winner} on host {socket.gethostname()})" \
            in message, message
        assert (run_dir / "config.yaml").read_text() == f"pid {winner}\n"


HOLD_LOCK = """
import sys, time
from pathlib import Path
from rnnclf.runs.lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=subprocess_env(tmp_path))
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid} "):
            RunLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # the file stays; the kernel dropped the lock
    lock = RunLock(tmp_path)
    lock.acquire()
    lock.release()


WAIT_THEN_TRAIN = """
import os, sys, time
from pathlib import Path
go = Path(os.environ["GO_FILE"])
while not go.exists():
    time.sleep(0.005)
from rnnclf.cli.app import main
sys.argv = ["rnnclf", *sys.argv[1:]]
main()
"""


def test_two_rnnclf_train_commands_started_together_one_runs(tmp_path: Path) -> None:
    """The real command twice, released at the same moment into the same folder: one trains,
    the other stops at once with one line naming the holder."""
    data = write_dataset(tmp_path / "data", train_rows=400)
    env = {**subprocess_env(tmp_path), "GO_FILE": str(tmp_path / "go")}
    for round_ in range(2):
        args = tiny_overrides(data, tmp_path / "runs", name=f"same{round_}", epochs=5)
        (tmp_path / "go").unlink(missing_ok=True)
        racers = [subprocess.Popen([sys.executable, "-c", WAIT_THEN_TRAIN, "train", *args],
                                   env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(3)  # both have imported what they need and wait for the file
        (tmp_path / "go").touch()
        done = [(racer.pid, *racer.communicate(timeout=240), racer.returncode)
                for racer in racers]
        codes = sorted(code for _, _, _, code in done)
        assert codes == [0, 2], done
        (winner, *_), (_, _, refusal, _) = sorted(done, key=lambda result: result[3])
        lines = refusal.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refusal, refusal
        # Normally the loser meets the lock; one slowed down past the winner's whole run meets
        # the finished run instead. Either way it did not train.
        assert f"pid {winner} on host {socket.gethostname()}" in lines[0] or \
            "already holds a run" in lines[0], lines[0]
