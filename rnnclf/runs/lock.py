"""One training per run folder: an OS lock on runs/<name>/.lock, held while the run trains.

The lock is `flock` on a file inside the run folder. The kernel drops it when the holding process
exits in any way (kill -9 included), so a crash never leaves a stale lock: the file itself may
stay, but an unlocked file means nobody owns the folder. While holding it, the owner writes its
pid and host into the file, so a second training can say who is in the way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path

from rnnclf.errors import RnnclfError

LOCK_FILE = ".lock"
# How long a refused process waits for the holder to write its name into the lock file (the
# holder writes it right after taking the lock; a race can read the file a moment before that).
HOLDER_WAIT_S = 2.0

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]


class RunFolderBusy(RnnclfError):
    """Another live process is training in this run folder."""


class RunLock:
    """An exclusive lock on `folder`; `acquire` refuses at once when another process holds it."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None or fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as error:
            raise RnnclfError(f"cannot create the lock file {self.path}: {error.strerror}; "
                              "choose another train.runs_dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RnnclfError(f"cannot lock {self.path}: {error.strerror}; choose another "
                                  "train.runs_dir") from None
            raise RunFolderBusy(f"{self.path.parent} is in use by another training "
                                f"({_holder(self.path)}); wait for it to finish or stop it, "
                                "or choose another train.name") from None
        self._fd = fd
        with contextlib.suppress(OSError):  # the name only serves the message of a loser
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)

    def release(self) -> None:
        """Unlock (the file stays: deleting it would let two processes lock two files)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock


def _holder(path: Path) -> str:
    """'pid P on host H' as the holder wrote it, waiting a moment if it has not yet."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            text = ""
        if text.startswith("pid ") and not _dead_here(text):
            return text
        if time.monotonic() >= deadline:
            return text if text.startswith("pid ") else "holder unknown"
        time.sleep(0.02)


def _dead_here(holder: str) -> bool:
    """True when `holder` names a process of this host that no longer runs: a name left by a
    previous (finished) owner, read before the new owner wrote its own."""
    parts = holder.split()
    if len(parts) < 5 or parts[3] != "host" or parts[4] != socket.gethostname():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return False
