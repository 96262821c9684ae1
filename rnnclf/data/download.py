"""Download a file over HTTP(S): resumable, retried, MD5-checked and written atomically.

The network work uses only the standard library; tqdm draws the progress bar. Bytes go to
`<dest>.part` in the destination's own directory, so the final `os.replace` is an atomic rename
and an interrupted run leaves a `.part` the next run resumes from, never a half-written `dest`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from rnnclf.errors import RnnclfError, one_line
from rnnclf.runs.atomic import fsync_dir

_CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
# What a dropped or stalled connection raises while reading (socket.timeout is TimeoutError).
_NETWORK_ERRORS = (TimeoutError, ConnectionError, http.client.HTTPException)


class _Transient(Exception):
    """A failure worth retrying: dropped connection, timeout, no route, HTTP 5xx or 429."""


class _StartOver(Exception):
    """The saved `.part` cannot be continued (stale, or the server sent another range)."""


def file_md5(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of the file at `path`, read in chunks so big files need little memory."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    dest: Path,
    md5: str | None,
    *,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest` and return `dest`; raise RnnclfError (one line) on failure.

    `timeout` bounds the connect and every read. Transient failures are retried up to `retries`
    times, sleeping `backoff * 2**attempt` seconds and resuming from the bytes already saved.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    reason = "no attempt was made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _fetch(url, part, dest, timeout=timeout, progress=progress, resume=True)
            break
        except _Transient as exc:
            reason = str(exc)
    else:
        tries = f"{retries + 1} attempt{'s' if retries else ''}"
        raise RnnclfError(
            one_line(
                f"could not download {url}: {reason} ({tries}); check your connection, "
                f"or download it yourself and put it at {dest}"
            )
        )
    if md5 is not None:
        _check_md5(part, md5, url, dest)
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest


def _check_md5(part: Path, md5: str, url: str, dest: Path) -> None:
    got = file_md5(part)
    if got.lower() != md5.strip().lower():
        # A corrupt .part must not be resumed next time: remove it so a retry starts clean.
        part.unlink(missing_ok=True)
        raise RnnclfError(
            one_line(
                f"downloaded {url} but its MD5 is {got}, expected {md5}; the file was "
                f"removed. Retry later, or put a verified copy at {dest}"
            )
        )


def _fetch(
    url: str, part: Path, dest: Path, *, timeout: float, progress: bool, resume: bool
) -> None:
    """Make one request and append to (or restart) `part`. Raises _Transient if worth retrying."""
    offset = part.stat().st_size if resume and part.exists() else 0
    try:
        _fetch_from(url, part, dest, offset, timeout=timeout, progress=progress)
    except _StartOver:
        part.unlink(missing_ok=True)
        _fetch(url, part, dest, timeout=timeout, progress=progress, resume=False)


def _fetch_from(
    url: str, part: Path, dest: Path, offset: int, *, timeout: float, progress: bool
) -> None:
    """Request the bytes from `offset` on and write them to `part`."""
    response = _open(url, dest, offset, timeout)
    if response is None:
        return
    with response:
        mode = _write_mode(response, offset)
        if mode == "wb":
            offset = 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.strip().isdigit() else None
        with (
            open(part, mode) as out,
            tqdm(
                total=None if expected is None else offset + expected,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                file=sys.stderr,
                disable=not progress,
            ) as bar,
        ):
            received = _copy(response, out, bar, timeout)
    # http.client returns b"" (no exception) when the peer closes early, so compare lengths.
    if expected is not None and received < expected:
        raise _Transient(
            f"connection dropped after {offset + received} of {offset + expected} bytes"
        )


def _open(url: str, dest: Path, offset: int, timeout: float) -> Any:
    """The response to a request from byte `offset`; None when the saved prefix is already the
    whole file (a crash came before the rename)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # The saved prefix is already the whole file, or it is stale (longer than the
            # file): keep it in the first case, start over in the second.
            match = _UNSATISFIED_RANGE.match(exc.headers.get("Content-Range") or "")
            if match and int(match.group(1)) == offset:
                return None
            raise _StartOver from exc
        if exc.code == 429 or exc.code >= 500:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise RnnclfError(
            one_line(
                f"could not download {url}: HTTP {exc.code} {exc.reason}; check the URL, "
                f"or download it yourself and put it at {dest}"
            )
        ) from exc
    except urllib.error.URLError as exc:  # DNS failure, refused, connect timeout
        raise _Transient(_describe(exc.reason, timeout)) from exc
    except _NETWORK_ERRORS as exc:  # e.g. the status line never arrives
        raise _Transient(_describe(exc, timeout)) from exc


def _write_mode(response: Any, offset: int) -> str:
    """"ab" to append a range that continues `part`, "wb" to write the whole file anew."""
    if response.status != 206:
        # 200 to a Range request means the server ignores Range: restart from byte zero.
        return "wb"
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
    if not match or int(match.group(1)) != offset:
        # Appending a range that starts elsewhere would corrupt the file.
        if not offset:
            raise _Transient("the server sent a partial response nobody asked for")
        raise _StartOver
    return "ab"


def _copy(response: Any, out: IO[bytes], bar: tqdm, timeout: float) -> int:
    """Stream the body into `out`; returns the bytes received."""
    received = 0
    try:
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    except _NETWORK_ERRORS as exc:
        raise _Transient(_describe(exc, timeout)) from exc
    finally:
        # Make what we got durable even on failure: it is what the next try resumes from.
        out.flush()
        os.fsync(out.fileno())
    return received


def _describe(exc: BaseException | str, timeout: float) -> str:
    """A short reason for a network failure, for the final error message."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, (http.client.IncompleteRead, ConnectionResetError)):
        return f"connection dropped mid-transfer ({type(exc).__name__})"
    return str(exc) or type(exc).__name__
