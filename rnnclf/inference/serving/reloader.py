"""Hot reload: watch the checkpoint file and swap in a replaced one without dropping a request.

A background thread stats the file about once a second. When its identity (inode, size, mtime)
changes, the new file is loaded on that thread while the old model keeps serving, then one
reference assignment swaps them: the batcher reads the current model once per batch, so every
batch (and every response's digest) belongs to exactly one checkpoint. A file that does not load
is refused with one log line and not retried until it changes again.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from rnnclf.errors import one_line
from rnnclf.inference.serving.model import (
    FileKey,
    LoadOptions,
    ServedModel,
    file_key,
    load_served_model,
)

log = logging.getLogger("rnnclf.serve")


class ModelHolder:
    """The model in service; `current` is swapped whole, never mutated."""

    def __init__(self, model: ServedModel) -> None:
        self.current = model

    def get(self) -> ServedModel:
        return self.current


class CheckpointWatcher:
    def __init__(self, holder: ModelHolder, options: LoadOptions,
                 interval_s: float = 1.0) -> None:
        self.holder = holder
        self.options = options
        self.interval_s = interval_s
        self.path = holder.current.path
        self._refused: FileKey | None = None  # a broken file already reported
        self._missing_reported = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rnnclf-reloader", daemon=True)
        self.reloads = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception:  # the watcher must outlive any surprise; the model keeps serving
                log.exception("checkpoint watch failed; still serving %s",
                              self.holder.current.sha256[:12])

    def check_once(self) -> bool:
        """Reload if the file changed; True when a new model was swapped in."""
        try:
            key = file_key(os.stat(self.path))
        except OSError:
            if not self._missing_reported:
                log.warning("checkpoint %s is gone; still serving %s", self.path,
                            self.holder.current.sha256[:12])
                self._missing_reported = True
            return False
        self._missing_reported = False
        if key == self.holder.current.file_key or key == self._refused:
            return False
        return self._reload(key)

    def _reload(self, key: FileKey) -> bool:
        old = self.holder.current
        try:
            new = load_served_model(Path(self.path), self.options)
        except Exception as error:  # RnnclfError, or torch failing on a foreign file
            self._refuse(key, error)
            return False
        self.holder.current = new  # the swap: one reference assignment
        self.reloads += 1
        log.info("reloaded %s: serving %s (was %s)", self.path, new.sha256[:12], old.sha256[:12])
        return True

    def _refuse(self, key: FileKey, error: Exception) -> None:
        self._refused = key
        log.warning("refused the new %s (%s); still serving %s", self.path,
                    one_line(str(error))[:300], self.holder.current.sha256[:12])
