"""Prepare batches on a background thread while the model trains on the current one."""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
_DONE = object()
# Producers still running, stopped and joined at exit (see _stop_producers).
_RUNNING: dict[threading.Thread, threading.Event] = {}


@atexit.register
def _stop_producers() -> None:
    """Stop producers whose consumer never closed them (a run that raised in mid-epoch keeps its
    generator in the traceback). Left running, one could still be inside a torch op when the
    interpreter shuts down; it would then die inside C++ code and abort the process (SIGABRT).
    atexit runs while the interpreter is whole, so the producer finishes its item and returns."""
    for worker, stop in list(_RUNNING.items()):
        stop.set()
        worker.join(timeout=5)


def prefetch(items: Iterable[Item], depth: int,
             prepare: Callable[[Item], Item] | None = None) -> Iterator[Item]:
    """Yield `items` (each passed through `prepare`) in order, `depth` of them made ahead.

    Collating runs in torch ops that release the GIL, so it overlaps with the training step.
    With depth 0 nothing runs in the background. An exception in the producer is raised here;
    closing the generator early (break, an error in the loop) stops the producer.
    """
    if depth <= 0:
        for item in items:
            yield prepare(item) if prepare is not None else item
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(prepare(item) if prepare is not None else item):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            put(_Failure(error))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="rnnclf-prefetch", daemon=True)
    _RUNNING[worker] = stop
    worker.start()
    try:
        while True:
            value = ready.get()
            if value is _DONE:
                return
            if isinstance(value, _Failure):
                raise value.error
            yield value
    finally:
        stop.set()
        worker.join(timeout=5)
        _RUNNING.pop(worker, None)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error
