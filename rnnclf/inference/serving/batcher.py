"""Micro-batching: requests that arrive together share one model call on one worker thread.

The event loop only queues work and awaits a future; the model runs on the worker thread, so a
slow batch never stalls the server's I/O. A batch closes at `max_batch` texts, or `max_wait_ms`
after its first request arrived, or as soon as it holds as many requests as the previous batch
did: under steady load that is when the waiting clients are all in, and a lone client (previous
batch: one request) starts at once instead of waiting out the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rnnclf.inference.predictor import Prediction
from rnnclf.inference.serving.model import ServedModel

log = logging.getLogger("rnnclf.serve")


class ServiceStopping(Exception):
    """The server is shutting down and takes no new work (HTTP 503)."""


@dataclass
class Answer:
    predictions: list[Prediction]
    sha256: str  # digest of the checkpoint whose model produced these predictions


@dataclass
class _Job:
    texts: list[str]
    top_k: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Answer]
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Runs `current_model()`'s predictor on batches gathered from concurrent `predict` calls."""

    def __init__(self, current_model: Callable[[], ServedModel], max_batch: int = 256,
                 max_wait_ms: float = 5.0) -> None:
        self._current_model = current_model
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._held: _Job | None = None  # a job that did not fit the last batch: it opens the next
        self._last_batch_requests = 1
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rnnclf-batcher", daemon=True)
        self.model_calls = 0  # read by tests and /v1/model's stats
        self.texts_served = 0

    def start(self) -> None:
        self._thread.start()

    async def predict(self, texts: list[str], top_k: int) -> Answer:
        loop = asyncio.get_running_loop()
        job = _Job(texts, top_k, loop, loop.create_future())
        with self._lock:  # no job may slip in behind the stop sentinel and wait forever
            if self._closed:
                raise ServiceStopping("the server is shutting down; retry on another instance")
            self._queue.put(job)
        return await job.future

    def stop(self, timeout: float = 30.0) -> None:
        """Finish every queued job, then end the worker thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._held if self._held is not None else self._queue.get()
            self._held = None
            if first is None:
                return
            batch, stop_seen = self._gather(first)
            self._serve(batch)
            if stop_seen:
                self._drain_and_exit()
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """`first` plus whatever joins it before the batch closes (see the module docstring)."""
        batch, texts = [first], len(first.texts)
        deadline = first.arrived + self.max_wait
        while texts < self.max_batch:
            waiting = len(batch) < self._last_batch_requests
            timeout = deadline - time.monotonic() if waiting else 0.0
            try:
                job = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._last_batch_requests = len(batch)
                return batch, True
            if texts + len(job.texts) > self.max_batch:
                self._held = job
                break
            batch.append(job)
            texts += len(job.texts)
        self._last_batch_requests = len(batch)
        return batch, False

    def _drain_and_exit(self) -> None:
        """After the stop sentinel nothing new can arrive; serve whatever was held."""
        if self._held is not None:
            job, self._held = self._held, None
            self._serve([job])

    def _serve(self, batch: list[_Job]) -> None:
        served = self._current_model()  # one model per batch, even if a reload swaps meanwhile
        texts = [text for job in batch for text in job.texts]
        try:
            predictions = served.predictor.predict(texts, top_k=len(served.labels))
        except Exception as error:  # a fault of the model, not of the request: a clean 5xx
            log.exception("prediction failed for a batch of %d texts", len(texts))
            for job in batch:
                _settle(job, error=error)
            return
        self.model_calls += 1
        self.texts_served += len(texts)
        start = 0
        for job in batch:
            mine = [_top(prediction, job.top_k)
                     for prediction in predictions[start:start + len(job.texts)]]
            start += len(job.texts)
            _settle(job, answer=Answer(mine, served.sha256))


def _top(prediction: Prediction, top_k: int) -> Prediction:
    """The batch ran with every label ranked; each request keeps its own top_k."""
    return Prediction(prediction.text, prediction.labels[:top_k],
                      prediction.probabilities[:top_k], prediction.truncated)


def _settle(job: _Job, answer: Answer | None = None, error: BaseException | None = None) -> None:
    def resolve() -> None:
        if job.future.done():  # the client went away and its handler was cancelled
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(answer)

    with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is waiting
        job.loop.call_soon_threadsafe(resolve)
