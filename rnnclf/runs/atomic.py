"""Writes that never leave a torn file: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from rnnclf.errors import RnnclfError, RunFailed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the rename itself lives in the folder's entry)."""
    with contextlib.suppress(OSError):  # not every platform can fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_error(path: Path, error: OSError) -> RunFailed:
    if error.errno == errno.ENOSPC:
        why = "the disk is full"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied"
    else:
        why = error.strerror or str(error)
    return RunFailed(f"cannot write {path}: {why}; the previous file was left as it was. "
                     "Free space or choose another folder (train.runs_dir)")


def _os_error_behind(error: BaseException) -> OSError | None:
    """The OSError that caused `error`, if any: torch.save reports a failed write (disk full)
    as a RuntimeError whose __context__ is the OSError."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ if current.__suppress_context__ \
            else current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _write_error(path, error) from None
    with contextlib.suppress(OSError, AttributeError):  # mkstemp makes 0600; use 0666 - umask
        os.fchmod(fd, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException as error:
        # Whatever went wrong (disk full, a second Ctrl-C, a bug), the target keeps its previous
        # whole version and the half-written temp file goes.
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        os_error = (_os_error_behind(error) if isinstance(error, Exception)
                    and not isinstance(error, RnnclfError) else None)
        if os_error is not None:
            raise _write_error(path, os_error) from None
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    with atomic_open(path, "wb") as handle:
        write(handle)


def atomic_torch_save(payload: Any, path: Path) -> None:
    atomic_write_bytes(Path(path), lambda handle: torch.save(payload, handle))


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(Path(path), "w") as handle:
        handle.write(text)


def write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One whole line per call, fsynced; readers skip a torn last line after a kill -9."""
    line = json.dumps(record) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise _write_error(Path(path), error) from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file, ignoring a torn (unparseable) line."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
