"""Helpers for the serve tests: tiny checkpoints, an in-process app, and a real `rnnclf serve`
subprocess on a free port. Imported by bare name, like robustness_support."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from robustness_support import subprocess_env

from rnnclf.inference.serving.app import Service, create_app
from rnnclf.inference.serving.batcher import MicroBatcher
from rnnclf.inference.serving.model import LoadOptions, load_served_model
from rnnclf.inference.serving.reloader import CheckpointWatcher, ModelHolder
from rnnclf.inference.serving.requests import Limits

CPU = LoadOptions(device="cpu")
SERVING_LINE = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+)")


def make_service(checkpoint: Path, max_batch: int = 256, max_wait_ms: float = 5.0,
                 limits: Limits | None = None) -> Service:
    """A Service whose watcher is driven by hand (check_once), never by its thread."""
    holder = ModelHolder(load_served_model(checkpoint, CPU))
    batcher = MicroBatcher(holder.get, max_batch, max_wait_ms)
    watcher = CheckpointWatcher(holder, CPU, interval_s=3600)
    return Service(holder, batcher, watcher, limits or Limits())


def app_of(service: Service):
    return create_app(service)


def replace_atomically(source: Path, target: Path) -> None:
    """What a training run does to best.pt: write a temp file beside it, then rename."""
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_bytes(source.read_bytes())
    os.replace(temporary, target)


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    log_lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(self.log_lines)


@contextmanager
def running_server(checkpoint: Path, tmp_path: Path, *extra: str) -> Iterator[ServerProcess]:
    """`rnnclf serve CHECKPOINT --port 0` in a subprocess, ready; stopped (SIGTERM) at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnclf", "serve", str(checkpoint), "--port", "0",
         "--threads", "1", "--device", "cpu", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=subprocess_env(tmp_path),
        cwd=tmp_path, text=True)
    lines: list[str] = []
    url = _wait_for_url(process, lines)
    server = ServerProcess(process, url, lines)
    reader = threading.Thread(target=_keep_reading, args=(process, lines), daemon=True)
    reader.start()
    try:
        _wait_ready(url, process)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=60)
        reader.join(timeout=10)


def _wait_for_url(process: subprocess.Popen, lines: list[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        found = SERVING_LINE.search(line)
        if found:
            return found.group(1)
    process.wait(timeout=30)
    raise AssertionError("rnnclf serve exited before serving:\n" + "\n".join(lines))


def _keep_reading(process: subprocess.Popen, lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))


def _wait_ready(url: str, process: subprocess.Popen, limit_s: float = 120) -> None:
    """Poll /readyz: a readiness wait, not a timing assertion (the limit only ends a hang)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "rnnclf serve exited while starting"
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("rnnclf serve never became ready")


def wait_until(condition, limit_s: float = 60, what: str = "condition") -> None:
    """Wait for `condition()`; the limit only turns a hang into a failure."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)
