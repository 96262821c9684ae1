"""End to end: `rnnclf train` into an empty data folder fetches AG News from a mirror (here a
real HTTP server on 127.0.0.1), verifies it, and fails in one line when it cannot."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from robustness_support import csv_bytes, generated_rows, run_cli, tiny_overrides

from rnnclf.data import agnews, download

TRAIN = csv_bytes(generated_rows(200, seed=1))
TEST = csv_bytes(generated_rows(40, seed=2))
FILES = {"/ag/train.csv": TRAIN, "/ag/test.csv": TEST}


class Mirror:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append((self.path, self.headers.get("Range")))
                body = FILES.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if len(mirror.requests) == 1:  # the very first answer drops halfway
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                start = int(match.group(1)) if match else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ag/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    served = Mirror()
    monkeypatch.setenv("RNNCLF_AGNEWS_MIRROR", served.url)
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)  # no real back-off waits
    yield served
    served.close()


def trust_generated_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The canonical MD5s only match the real AG News; let the generated files pass instead."""
    monkeypatch.setitem(agnews.KNOWN_MD5, "train.csv", hashlib.md5(TRAIN).hexdigest())
    monkeypatch.setitem(agnews.KNOWN_MD5, "test.csv", hashlib.md5(TEST).hexdigest())


def test_train_and_eval_download_into_an_empty_data_dir(
        mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    trust_generated_files(monkeypatch)
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    result = run_cli(["train", *tiny_overrides(data_dir, tmp_path / "runs", epochs=1)], capsys)
    assert result.code == 0, result.stderr
    assert "180 train / 20 val rows" in result.stdout
    assert sorted(p.name for p in data_dir.iterdir()) == ["train.csv"]
    assert (data_dir / "train.csv").read_bytes() == TRAIN
    # The first answer dropped halfway; the retry asked only for the missing bytes.
    assert mirror.requests[0] == ("/ag/train.csv", None)
    assert mirror.requests[1] == ("/ag/train.csv", f"bytes={len(TRAIN) // 2}-")

    result = run_cli(["eval", tmp_path / "runs" / "tiny" / "best.pt", "--device", "cpu"], capsys)
    assert result.code == 0, result.stderr
    assert (data_dir / "test.csv").read_bytes() == TEST
    assert sorted(p.name for p in data_dir.iterdir()) == ["test.csv", "train.csv"]


def test_files_that_fail_the_md5_check_are_refused_and_removed(
        mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "empty"
    result = run_cli(["train", *tiny_overrides(data_dir, tmp_path / "runs", epochs=1)], capsys)
    line = result.assert_one_error_line("MD5", agnews.KNOWN_MD5["train.csv"], "was removed",
                                        other_stderr=True)
    assert str(data_dir) in line
    assert list(data_dir.iterdir()) == []  # neither train.csv nor a .part to resume from
    assert not (tmp_path / "runs" / "tiny" / "best.pt").exists()


def test_offline_says_which_files_to_put_where(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RNNCLF_AGNEWS_MIRROR", f"http://127.0.0.1:{port}/ag/")
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    data_dir = tmp_path / "empty"
    result = run_cli(["train", *tiny_overrides(data_dir, tmp_path / "runs", epochs=1)], capsys)
    line = result.assert_one_error_line("could not download", "train.csv and test.csv",
                                        str(data_dir), other_stderr=True)
    assert "5 attempts" in line
    assert list(data_dir.iterdir()) == []


def test_a_missing_file_on_the_mirror_is_one_line_without_retries(
        mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RNNCLF_AGNEWS_MIRROR", mirror.url + "nowhere/")
    data_dir = tmp_path / "empty"
    result = run_cli(["train", *tiny_overrides(data_dir, tmp_path / "runs", epochs=1)], capsys)
    result.assert_one_error_line("HTTP 404", other_stderr=True)
    assert len(mirror.requests) == 1
