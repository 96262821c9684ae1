"""Micro-batching (requests that wait together share one model call) and hot reload (a replaced
checkpoint is swapped in, a broken one refused), driven in process without timed assertions."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_support import app_of, make_service, replace_atomically, wait_until

from rnnclf.inference.predictor import Predictor


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class GatedPredict:
    """Wraps Predictor.predict: counts model calls, and holds the first call until released,
    so the test knows requests are queued behind a busy worker."""

    def __init__(self, original) -> None:
        self.original = original
        self.calls: list[int] = []  # texts per model call
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, predictor: Predictor, texts: list[str], top_k: int = 1):
        self.calls.append(len(texts))
        self.entered.set()
        self.release.wait(timeout=120)
        return self.original(predictor, texts, top_k=top_k)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def predict(predictor: Predictor, texts: list[str], top_k: int = 1):
            return self(predictor, texts, top_k)

        monkeypatch.setattr(Predictor, "predict", predict)


def test_concurrent_requests_share_one_model_call(served_checkpoint: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    gate = GatedPredict(Predictor.predict)
    service = make_service(served_checkpoint, max_batch=64, max_wait_ms=1.0)
    # after the service: its warm-up prediction must not pass the gate
    gate.install(monkeypatch)
    batcher = service.batcher

    async def scenario() -> list:
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.predict(["the first text"], 1))
            await asyncio.to_thread(gate.entered.wait, 60)  # the worker is busy with it
            waiting = [asyncio.ensure_future(batcher.predict([f"text {i}", "more"], 2))
                       for i in range(10)]
            await asyncio.sleep(0)  # let them reach the queue
            await asyncio.to_thread(wait_until, lambda: batcher._queue.qsize() == 10, 60,
                                    "ten queued requests")
            gate.release.set()
            return await asyncio.gather(first, *waiting)
        finally:
            batcher.stop()

    answers = asyncio.run(scenario())
    assert gate.calls == [1, 20]  # the ten queued requests (20 texts) went in one call
    assert batcher.model_calls == 2
    for answer in answers[1:]:
        assert len(answer.predictions) == 2
        assert all(len(p.labels) == 2 for p in answer.predictions)  # each keeps its top_k
    assert answers[0].predictions[0].text == "the first text"
    assert [answer.predictions[0].text for answer in answers[1:]] == \
        [f"text {i}" for i in range(10)]


def test_a_batch_never_passes_max_batch_texts(served_checkpoint: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    gate = GatedPredict(Predictor.predict)
    service = make_service(served_checkpoint, max_batch=8, max_wait_ms=1.0)
    # after the service: its warm-up prediction must not pass the gate
    gate.install(monkeypatch)

    async def scenario() -> None:
        service.batcher.start()
        try:
            first = asyncio.ensure_future(service.batcher.predict(["x"], 1))
            await asyncio.to_thread(gate.entered.wait, 60)
            rest = [asyncio.ensure_future(service.batcher.predict(["a", "b", "c"], 1))
                    for _ in range(5)]
            await asyncio.sleep(0)
            await asyncio.to_thread(wait_until, lambda: service.batcher._queue.qsize() == 5)
            gate.release.set()
            await asyncio.gather(first, *rest)
        finally:
            service.batcher.stop()

    asyncio.run(scenario())
    assert gate.calls[0] == 1
    assert sum(gate.calls) == 16 and all(size <= 8 for size in gate.calls)
    assert gate.calls[1:] == [6, 6, 3]


def test_a_lone_request_does_not_wait_out_the_window(served_checkpoint: Path) -> None:
    """With an hour-long window, a lone request still runs at once: the previous batch held
    one request, so the worker expects no company."""
    service = make_service(served_checkpoint, max_wait_ms=3_600_000)

    async def scenario() -> None:
        service.batcher.start()
        try:
            for _ in range(3):
                await asyncio.wait_for(service.batcher.predict(["alone"], 1), timeout=300)
        finally:
            service.batcher.stop()

    asyncio.run(scenario())
    assert service.batcher.model_calls == 3


def test_stop_finishes_queued_requests(served_checkpoint: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    gate = GatedPredict(Predictor.predict)
    service = make_service(served_checkpoint, max_batch=2)
    # after the service: its warm-up prediction must not pass the gate
    gate.install(monkeypatch)

    async def scenario() -> list:
        service.batcher.start()
        jobs = [asyncio.ensure_future(service.batcher.predict([f"t{i}"], 1)) for i in range(5)]
        await asyncio.to_thread(gate.entered.wait, 60)
        stopper = asyncio.get_running_loop().run_in_executor(None, service.batcher.stop)
        await asyncio.sleep(0)
        gate.release.set()
        await stopper
        return await asyncio.gather(*jobs)

    answers = asyncio.run(scenario())
    assert [answer.predictions[0].text for answer in answers] == [f"t{i}" for i in range(5)]


def test_replaced_checkpoint_is_swapped_in_without_a_failed_request(
        served_checkpoint: Path, tiny_checkpoints) -> None:
    service = make_service(served_checkpoint)
    old, new = digest(served_checkpoint), digest(tiny_checkpoints.second)
    assert old != new
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()
    with TestClient(app_of(service)) as client:
        def hammer() -> None:
            while not stop.is_set():
                response = client.post("/v1/predict", json={"texts": ["markets rally"]})
                seen.append((response.status_code, response.json().get("checkpoint_sha256")))

        worker = threading.Thread(target=hammer)
        worker.start()
        wait_until(lambda: len(seen) >= 3, what="requests before the swap")
        replace_atomically(tiny_checkpoints.second, served_checkpoint)
        assert service.watcher.check_once() is True
        count = len(seen)
        wait_until(lambda: len(seen) >= count + 4, what="requests after the swap")
        stop.set()
        worker.join(timeout=60)
        after = client.post("/v1/predict", json={"texts": ["markets rally"]}).json()
        info = client.get("/v1/model").json()
    assert after["checkpoint_sha256"] == new
    assert info["checkpoint_sha256"] == new and info["stats"]["reloads"] == 1
    assert all(status == 200 for status, _ in seen), seen
    assert {sha for _, sha in seen} <= {old, new}
    assert seen[0][1] == old
    # one request may have been in flight at the swap; every one sent after it has the new model
    assert all(sha == new for _, sha in seen[count + 1:])


@pytest.mark.parametrize("broken", [b"", b"not a checkpoint at all", b"PK\x03\x04torn zip"])
def test_broken_new_checkpoint_is_refused_with_one_log_line(
        served_checkpoint: Path, broken: bytes, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    service = make_service(served_checkpoint)
    old = digest(served_checkpoint)
    source = tmp_path / "broken.pt"
    source.write_bytes(broken)
    replace_atomically(source, served_checkpoint)
    with caplog.at_level(logging.INFO, logger="rnnclf.serve"):
        assert service.watcher.check_once() is False
        assert service.watcher.check_once() is False  # the same file is not retried
    refusals = [r for r in caplog.records if r.name == "rnnclf.serve"]
    assert len(refusals) == 1, caplog.text
    message = refusals[0].getMessage()
    assert "refused the new" in message and old[:12] in message and "\n" not in message
    assert refusals[0].exc_info is None  # one line, no traceback
    with TestClient(app_of(service)) as client:
        response = client.post("/v1/predict", json={"texts": ["still here"]})
    assert response.status_code == 200
    assert response.json()["checkpoint_sha256"] == old


def test_truncated_copy_of_a_real_checkpoint_is_refused(served_checkpoint: Path,
                                                        tiny_checkpoints, tmp_path: Path) -> None:
    service = make_service(served_checkpoint)
    old = digest(served_checkpoint)
    torn = tmp_path / "torn.pt"
    data = tiny_checkpoints.second.read_bytes()
    torn.write_bytes(data[: len(data) // 2])
    replace_atomically(torn, served_checkpoint)
    assert service.watcher.check_once() is False
    assert service.holder.current.sha256 == old
    replace_atomically(tiny_checkpoints.second, served_checkpoint)  # then a good one arrives
    assert service.watcher.check_once() is True
    assert service.holder.current.sha256 == digest(tiny_checkpoints.second)
