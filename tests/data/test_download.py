"""download_file against real HTTP servers on 127.0.0.1: drops, resumes, bad bytes, stalls, 5xx."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rnnclf.data import download
from rnnclf.data.download import download_file, file_md5
from rnnclf.errors import RnnclfError

DATA = bytes(range(256)) * 800  # 200 KiB: several read chunks, so a drop lands mid-stream
HALF = len(DATA) // 2
DATA_MD5 = hashlib.md5(DATA).hexdigest()
FAST = {"timeout": 1.0, "backoff": 0.01, "progress": False}


@dataclass
class Server:
    url: str
    ranges: list[str | None] = field(default_factory=list)  # Range header of each request
    release: threading.Event = field(default_factory=threading.Event)  # frees stalled handlers

    @property
    def hits(self) -> int:
        return len(self.ranges)


Respond = Callable[[http.server.BaseHTTPRequestHandler, int], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], Server]]:
    """Start a threaded HTTP server on 127.0.0.1 whose GET calls `respond(handler, hit_number)`."""
    started: list[tuple[http.server.ThreadingHTTPServer, threading.Thread, Server]] = []

    def start(respond: Respond) -> Server:
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    info.ranges.append(self.headers.get("Range"))
                    hit = info.hits
                respond(self, hit)

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        info = Server(url=f"http://127.0.0.1:{httpd.server_address[1]}/data.bin")
        # A short poll interval keeps shutdown() (and so each test's teardown) fast.
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((httpd, thread, info))
        return info

    yield start
    for httpd, thread, info in started:
        info.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- response behaviours ------------------------------------------------------------------------


def send_body(
    h: http.server.BaseHTTPRequestHandler,
    body: bytes,
    status: int = 200,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    h.send_response(status)
    h.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(body)


def send_range_aware(h: http.server.BaseHTTPRequestHandler, body: bytes = DATA) -> None:
    """Honour `Range: bytes=N-` with 206 (or 416 past the end), like a real file server."""
    match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
    if not match:
        send_body(h, body)
        return
    start = int(match.group(1))
    if start >= len(body):
        send_body(h, b"", 416, (("Content-Range", f"bytes */{len(body)}"),))
        return
    content_range = f"bytes {start}-{len(body) - 1}/{len(body)}"
    send_body(h, body[start:], 206, (("Content-Range", content_range),))


def drop_halfway(h: http.server.BaseHTTPRequestHandler) -> None:
    """Promise the whole file in Content-Length, send half, then close the connection."""
    h.send_response(200)
    h.send_header("Content-Length", str(len(DATA)))
    h.end_headers()
    h.wfile.write(DATA[:HALF])
    h.wfile.flush()
    h.close_connection = True


def drop_first_then(serve_rest: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Respond:
    def respond(h: http.server.BaseHTTPRequestHandler, hit: int) -> None:
        if hit == 1:
            drop_halfway(h)
        else:
            serve_rest(h)

    return respond


def ignore_range(h: http.server.BaseHTTPRequestHandler) -> None:
    send_body(h, DATA)


def assert_one_line(err: pytest.ExceptionInfo[RnnclfError]) -> str:
    message = str(err.value)
    assert "\n" not in message and "\r" not in message
    return message


# --- tests --------------------------------------------------------------------------------------


def test_normal_download(serve, tmp_path: Path) -> None:
    server = serve(lambda h, hit: send_body(h, DATA))
    dest = tmp_path / "sub" / "data.bin"
    assert download_file(server.url, dest, DATA_MD5, **FAST) == dest
    assert dest.read_bytes() == DATA
    assert file_md5(dest) == DATA_MD5
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]
    assert server.ranges == [None]


def test_md5_is_optional_and_case_insensitive(serve, tmp_path: Path) -> None:
    server = serve(lambda h, hit: send_body(h, DATA))
    download_file(server.url, tmp_path / "a.bin", None, **FAST)
    download_file(server.url, tmp_path / "b.bin", DATA_MD5.upper(), **FAST)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes() == DATA


@pytest.mark.parametrize("rest", [send_range_aware, ignore_range], ids=["range", "no-range"])
def test_dropped_connection_is_resumed_within_one_call(serve, tmp_path: Path, rest) -> None:
    server = serve(drop_first_then(rest))
    dest = tmp_path / "data.bin"
    download_file(server.url, dest, DATA_MD5, retries=2, **FAST)
    assert dest.read_bytes() == DATA
    # The retry asked to resume; a server that ignores Range sends it all and we restart.
    assert server.ranges == [None, f"bytes={HALF}-"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


@pytest.mark.parametrize("rest", [send_range_aware, ignore_range], ids=["range", "no-range"])
def test_dropped_connection_leaves_part_that_next_call_resumes(serve, tmp_path: Path, rest) -> None:
    server = serve(drop_first_then(rest))
    dest = tmp_path / "data.bin"
    part = tmp_path / "data.bin.part"
    with pytest.raises(RnnclfError) as err:
        download_file(server.url, dest, DATA_MD5, retries=0, **FAST)
    message = assert_one_line(err)
    assert "connection dropped" in message and server.url in message and str(dest) in message
    assert not dest.exists()
    assert part.read_bytes() == DATA[:HALF]

    download_file(server.url, dest, DATA_MD5, retries=0, **FAST)
    assert dest.read_bytes() == DATA
    assert not part.exists()
    assert server.ranges == [None, f"bytes={HALF}-"]


def test_stale_part_longer_than_file_gets_416_and_restarts(serve, tmp_path: Path) -> None:
    server = serve(lambda h, hit: send_range_aware(h))
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"x" * (len(DATA) + 10))
    download_file(server.url, dest, DATA_MD5, retries=0, **FAST)
    assert dest.read_bytes() == DATA
    assert server.ranges == [f"bytes={len(DATA) + 10}-", None]


def test_complete_part_gets_416_and_is_kept(serve, tmp_path: Path) -> None:
    server = serve(lambda h, hit: send_range_aware(h))
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(DATA)  # e.g. a crash just before the rename
    download_file(server.url, dest, DATA_MD5, retries=0, **FAST)
    assert dest.read_bytes() == DATA
    assert server.ranges == [f"bytes={len(DATA)}-"]


def test_206_at_wrong_offset_restarts_from_zero(serve, tmp_path: Path) -> None:
    def wrong_range(h: http.server.BaseHTTPRequestHandler, hit: int) -> None:
        if h.headers.get("Range"):  # always answers from byte 0, whatever was asked
            content_range = f"bytes 0-{len(DATA) - 1}/{len(DATA)}"
            send_body(h, DATA, 206, (("Content-Range", content_range),))
        else:
            send_body(h, DATA)

    server = serve(wrong_range)
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(DATA[:HALF])
    download_file(server.url, dest, DATA_MD5, retries=0, **FAST)
    assert dest.read_bytes() == DATA
    assert server.ranges == [f"bytes={HALF}-", None]


def test_md5_mismatch_removes_everything(serve, tmp_path: Path) -> None:
    server = serve(lambda h, hit: send_body(h, DATA[::-1]))
    folder = tmp_path / "out"
    dest = folder / "data.bin"
    with pytest.raises(RnnclfError) as err:
        download_file(server.url, dest, DATA_MD5, **FAST)
    message = assert_one_line(err)
    got = hashlib.md5(DATA[::-1]).hexdigest()
    assert "MD5" in message and DATA_MD5 in message and got in message
    assert server.url in message and str(dest) in message
    assert not dest.exists()
    assert list(folder.iterdir()) == []
    assert server.hits == 1  # bad bytes are not a transient failure


def test_server_that_never_answers_times_out(tmp_path: Path) -> None:
    # Listens (the kernel completes the handshake) but never accepts, so no byte ever comes back.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/data.bin"
        dest = tmp_path / "data.bin"
        began = time.monotonic()
        with pytest.raises(RnnclfError) as err:
            download_file(url, dest, DATA_MD5, timeout=0.5, retries=1, backoff=0.01, progress=False)
        elapsed = time.monotonic() - began
    message = assert_one_line(err)
    assert "timed out after 0.5 s" in message and url in message and str(dest) in message
    assert "2 attempts" in message
    assert elapsed < 5
    assert not dest.exists()


def test_server_that_stalls_mid_body_times_out(serve, tmp_path: Path) -> None:
    def stall(h: http.server.BaseHTTPRequestHandler, hit: int) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(DATA)))
        h.end_headers()
        h.wfile.write(DATA[:HALF])
        h.wfile.flush()
        server.release.wait(10)  # hold the connection open without sending more

    server = serve(stall)
    dest = tmp_path / "data.bin"
    began = time.monotonic()
    with pytest.raises(RnnclfError) as err:
        download_file(
            server.url, dest, DATA_MD5, timeout=0.5, retries=1, backoff=0.01, progress=False
        )
    assert time.monotonic() - began < 5
    assert "timed out after 0.5 s" in assert_one_line(err)
    assert not dest.exists()
    assert server.hits == 2


def test_no_network_is_one_line_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # find a port nobody uses
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.bin"
    dest = tmp_path / "data.bin"
    with pytest.raises(RnnclfError) as err:
        download_file(url, dest, DATA_MD5, retries=1, **FAST)
    message = assert_one_line(err)
    assert url in message and "check your connection" in message and str(dest) in message
    assert not dest.exists()


@pytest.mark.parametrize("status", [503, 429])
def test_transient_errors_are_retried_with_backoff(
    serve, tmp_path: Path, monkeypatch, status: int
) -> None:
    def flaky(h: http.server.BaseHTTPRequestHandler, hit: int) -> None:
        if hit <= 2:
            h.send_error(status)
        else:
            send_body(h, DATA)

    delays: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(download.time, "sleep", sleep)
    server = serve(flaky)
    dest = tmp_path / "data.bin"
    download_file(server.url, dest, DATA_MD5, retries=4, **FAST)
    assert dest.read_bytes() == DATA
    assert server.hits == 3
    assert delays == [0.01, 0.02]  # backoff * 2**attempt


def test_404_fails_at_once(serve, tmp_path: Path) -> None:
    server = serve(lambda h, hit: h.send_error(404))
    dest = tmp_path / "data.bin"
    began = time.monotonic()
    with pytest.raises(RnnclfError) as err:
        # A long backoff: any retry would blow the time bound below.
        download_file(
            server.url, dest, DATA_MD5, timeout=1.0, retries=4, backoff=5.0, progress=False
        )
    assert time.monotonic() - began < 2
    message = assert_one_line(err)
    assert "404" in message and server.url in message and str(dest) in message
    assert server.hits == 1
    assert not dest.exists()


def test_retries_exhausted_on_transient_errors(serve, tmp_path: Path) -> None:
    server = serve(lambda h, hit: h.send_error(503))
    dest = tmp_path / "data.bin"
    with pytest.raises(RnnclfError) as err:
        download_file(server.url, dest, DATA_MD5, retries=2, **FAST)
    message = assert_one_line(err)
    assert "HTTP 503" in message and "3 attempts" in message and server.url in message
    assert server.hits == 3
    assert not dest.exists()


def test_progress_bar_goes_to_stderr_only_when_asked(serve, tmp_path: Path, capsys) -> None:
    server = serve(lambda h, hit: send_body(h, DATA))
    download_file(server.url, tmp_path / "a.bin", DATA_MD5, timeout=1.0, progress=True)
    captured = capsys.readouterr()
    assert "100%" in captured.err and captured.out == ""
    download_file(server.url, tmp_path / "b.bin", DATA_MD5, timeout=1.0, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_file_md5_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    assert file_md5(path, chunk_size=1000) == DATA_MD5
