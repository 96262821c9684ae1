"""`rnnclf data download` (against a local HTTP server) and `rnnclf data info`."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import load_config
from rnnclf.data import agnews
from rnnclf.data.info import dataset_info, download_ag_news, format_info
from rnnclf.errors import RnnclfError

TRAIN = '"1","Rebels","attack the capital"\n"2","Goal","late goal wins the cup"\n' * 10
TEST = '"3","Shares","shares fall"\n"4","Chip","new chip unveiled today"\n'


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local server with tiny train.csv/test.csv whose MD5s stand in for AG News' own."""
    served = tmp_path / "served"
    served.mkdir()
    for name, text in (("train.csv", TRAIN), ("test.csv", TEST)):
        (served / name).write_text(text)
        monkeypatch.setitem(agnews.KNOWN_MD5, name, hashlib.md5(text.encode()).hexdigest())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_then_verify(tmp_path: Path, mirror: str) -> None:
    notes: list[str] = []
    paths = download_ag_news(str(tmp_path / "ag"), mirror, log=notes.append)
    assert [path.read_text() for path in paths] == [TRAIN, TEST]
    assert all(note.startswith("downloaded") for note in notes)
    result = CliRunner().invoke(app, ["data", "download", "--dir", str(tmp_path / "ag"),
                                      "--mirror", mirror])
    assert result.exit_code == 0 and result.output.count("verified") == 2, result.output
    (tmp_path / "ag" / "test.csv").write_text(TEST + TEST)
    with pytest.raises(RnnclfError, match="is not the AG News test.csv.*delete it"):
        download_ag_news(str(tmp_path / "ag"), mirror, log=notes.append)


def test_data_info_counts_lengths_and_coverage(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(TRAIN)
    (tmp_path / "test.csv").write_text(TEST)
    config = load_config(None, [f"data.dir={tmp_path}", "data.download=false",
                                "data.val_fraction=0.1", "data.min_freq=1"]).data
    info = dataset_info(config)
    train, val, test = (info["splits"][name] for name in ("train", "val", "test"))
    assert train["rows"] + val["rows"] == 20 and test["rows"] == 2
    assert sum(train["labels"].values()) == train["rows"]
    assert test["labels"] == {"World": 0, "Sports": 0, "Business": 1, "Sci/Tech": 1}
    assert train["vocab_coverage"] == 1.0
    # test tokens: shares fall / new chip unveiled today -> none seen in training
    assert test["vocab_coverage"] == 0.0
    assert test["length_tokens"]["max"] == 5  # "chip" + "new chip unveiled today"
    assert "vocab coverage" in format_info(info)
    result = CliRunner().invoke(app, ["data", "info", f"data.dir={tmp_path}",
                                      "data.download=false", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["splits"]["test"]["rows"] == 2
