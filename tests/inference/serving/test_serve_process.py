"""`rnnclf serve` as a real process on a free port: requests over HTTP, the watcher thread's
reload, SIGTERM with requests in flight, and one-line errors at start-up."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
from pathlib import Path

import httpx
import pytest
from robustness_support import run_subprocess
from serve_support import replace_atomically, running_server, wait_until


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_serves_over_http_and_reloads_a_replaced_checkpoint(served_checkpoint: Path,
                                                            tiny_checkpoints,
                                                            tmp_path: Path) -> None:
    old, new = digest(served_checkpoint), digest(tiny_checkpoints.second)
    with running_server(served_checkpoint, tmp_path, "--reload-interval", "0.2") as server:
        response = httpx.post(server.url + "/v1/predict", json={"texts": ["rates rise"]})
        assert response.status_code == 200 and response.json()["checkpoint_sha256"] == old
        replace_atomically(tiny_checkpoints.second, served_checkpoint)

        def answered_by_new() -> bool:
            reply = httpx.post(server.url + "/v1/predict", json={"texts": ["rates rise"]})
            assert reply.status_code == 200, reply.text
            return reply.json()["checkpoint_sha256"] == new

        wait_until(answered_by_new, what="the reloaded checkpoint")
        assert httpx.get(server.url + "/v1/model").json()["checkpoint_sha256"] == new
        assert any("reloaded" in line and new[:12] in line for line in server.log_lines)


def test_sigterm_lets_in_flight_requests_finish(served_checkpoint: Path,
                                                tmp_path: Path) -> None:
    """Requests whose bodies are still arriving when SIGTERM comes are answered in full."""
    body = json.dumps({"texts": ["the market closed higher", "a late goal"], "top_k": 2})
    raw = body.encode()
    with running_server(served_checkpoint, tmp_path) as server:
        host, port = server.url.removeprefix("http://").split(":")
        sockets = []
        for _ in range(4):
            connection = socket.create_connection((host, int(port)), timeout=60)
            connection.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\n"
                               f"Content-Type: application/json\r\n"
                               f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw[:10])
            sockets.append(connection)
        # once this round trip is done, the server has read the four requests' headers
        assert httpx.get(server.url + "/healthz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        wait_until(lambda: any("Shutting down" in line for line in server.log_lines),
                   what="the server to begin its shutdown")
        replies = []
        for connection in sockets:
            connection.sendall(raw[10:])
            replies.append(_read_response(connection))
            connection.close()
        # uvicorn re-raises SIGTERM once it has shut down, so the exit is "killed by SIGTERM"
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete." in server.log()
    for status, payload in replies:
        assert status == 200, payload
        assert len(json.loads(payload)["predictions"]) == 2
    with pytest.raises(httpx.TransportError):  # and it no longer takes new connections
        httpx.get(server.url + "/healthz")


def _read_response(connection: socket.socket) -> tuple[int, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines
                  if line.lower().startswith("content-length"))
    while len(rest) < length:
        chunk = connection.recv(65536)
        assert chunk
        rest += chunk
    return int(lines[0].split()[1]), rest[:length].decode()


def test_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    result = run_subprocess(["serve", tmp_path / "nothing.pt", "--port", "0"], tmp_path)
    result.assert_one_error_line("does not exist")


def test_broken_checkpoint_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "best.pt"
    broken.write_bytes(b"garbage")
    result = run_subprocess(["serve", broken, "--port", "0"], tmp_path)
    line = result.assert_one_error_line("not a readable rnnclf checkpoint")
    assert str(broken) in line and "rnnclf-serve-" not in line  # the user's path, not a copy


def test_port_in_use_is_one_line(served_checkpoint: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_subprocess(["serve", served_checkpoint, "--port", port], tmp_path)
    result.assert_one_error_line(f"cannot listen on 127.0.0.1:{port}", "--port")


def test_no_run_yet_is_one_line(tmp_path: Path) -> None:
    result = run_subprocess(["serve", "--port", "0"], tmp_path)
    result.assert_one_error_line("no run with a best.pt")
