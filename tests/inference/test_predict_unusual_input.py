"""`rnnclf predict` under stress: huge, unknown, foreign, control-character and empty texts,
10,000 lines on stdin, bytes that are not UTF-8, and a reader that goes away."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from robustness_support import run_cli, tiny_overrides, write_dataset

from rnnclf.cli import predict as predict_command
from rnnclf.config import load_config
from rnnclf.inference.predictor import Predictor
from rnnclf.training.trainer import fit

LABELS = {"World", "Sports", "Business", "Sci/Tech"}
MAX_LENGTH = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNCLF_CACHE_DIR", str(root / "cache"))
        data = write_dataset(root / "data")
        overrides = tiny_overrides(data, root / "runs", epochs=1,
                                   **{"data.max_length": MAX_LENGTH,
                                      "train.eval_batch_size": 256})
        fit(load_config(None, overrides), log=lambda *a: None)
        yield root / "runs" / "tiny" / "best.pt"


def predict(checkpoint: Path, capsys: pytest.CaptureFixture[str], *texts: str,
            stdin: str | None = None, json_output: bool = True) -> list[dict]:
    args = ["predict", "-c", checkpoint, "--device", "cpu", *(["--json"] if json_output else []),
            *texts]
    result = run_cli(args, capsys, stdin=stdin)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    if not json_output:
        return [{"line": line} for line in result.stdout.splitlines()]
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_sane(record: dict) -> None:
    assert record["label"] in LABELS
    assert 0.0 <= record["probability"] <= 1.0


def test_a_one_megabyte_text_is_truncated_and_says_so(checkpoint: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    huge = "football coach league " * 50_000  # 1.1 MB
    (record,) = predict(checkpoint, capsys, huge)
    assert_sane(record)
    assert record["truncated"] is True
    assert len(record["text"]) < 300  # the echo of the text is shortened too
    (short,) = predict(checkpoint, capsys, "football coach league")
    assert short["truncated"] is False
    lines = predict(checkpoint, capsys, huge, "football coach", json_output=False)
    assert lines[0]["line"].endswith("(truncated)") and "truncated" not in lines[1]["line"]


def test_memory_for_a_huge_text_is_bounded_by_max_length(checkpoint: Path) -> None:
    predictor = Predictor(checkpoint, "cpu")
    huge = "election " * 1_000_000  # 9 MB: tokenizing all of it would need far more memory
    tracemalloc.start()
    try:
        (result,) = predictor.predict([huge])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.truncated
    assert peak < 5_000_000, peak  # Python-side peak while classifying, bytes


@pytest.mark.parametrize("text", [
    "zzqx vvbn plorf quux",  # every token out of the vocabulary
    "Путин встретился с премьер-министром",  # Cyrillic
    "東京証券取引所の株価が上昇",  # Japanese, no spaces
    "الرئيس يلتقي رئيس الوزراء",  # Arabic (right to left)
    "\U0001f680\U0001f30d\U0001f4c8 \U0001f3c8\u26bd",  # emoji only
    "goal\x00\x01\x1b[31mred\x1b[0m\x7f\u200b\u2028\u2029\ufeffend",  # control and format chars
    "&#39; #39; quot; <br /> \\ \\\\ &amp;",  # AG News artifacts and escapes
    ".,;:!?()'",  # punctuation only
], ids=["oov", "cyrillic", "japanese", "arabic", "emoji", "control", "artifacts", "punctuation"])
def test_unusual_texts_get_one_sane_prediction(checkpoint: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               text: str) -> None:
    (record,) = predict(checkpoint, capsys, text)
    assert_sane(record)
    assert record["text"] == text
    assert sum(entry["probability"] for entry in predict(checkpoint, capsys, "--top-k", "4",
                                                         text)[0]["top_k"]) == pytest.approx(1.0)


def test_ten_thousand_lines_on_stdin(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words = ["football coach", "shares profit", "linux chip", "embassy troops", "zzz",
             "東京 \U0001f600", "x" * 5000]
    lines = [f"{words[i % len(words)]} {i}" for i in range(10_000)]
    records = predict(checkpoint, capsys, "-", stdin="\r\n".join(lines) + "\r\n")
    assert len(records) == 10_000
    assert [r["text"] for r in records[:3]] == lines[:3]
    assert records[-1]["text"] == lines[-1]
    for record in records[::97]:
        assert_sane(record)
    plain = predict(checkpoint, capsys, "-", stdin="\n".join(lines), json_output=False)
    assert len(plain) == 10_000


def test_arguments_and_stdin_mix_in_order(checkpoint: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    records = predict(checkpoint, capsys, "first", "-", "last", stdin="a\nb\n")
    assert [r["text"] for r in records] == ["first", "a", "b", "last"]


def test_bytes_that_are_not_utf8_on_stdin_are_replaced(checkpoint: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    stdin = "caf\udce9 prices\nfine text\n"  # \udce9 is written back as the raw byte 0xE9
    records = predict(checkpoint, capsys, "-", stdin=stdin)
    assert [r["text"] for r in records] == ["caf\ufffd prices", "fine text"]


def test_an_empty_stdin_line_names_its_line_number(checkpoint: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    stdin = "football coach\nshares profit\n   \nlinux chip\n"
    result = run_cli(["predict", "-c", checkpoint, "-"], capsys, stdin=stdin)
    result.assert_one_error_line("stdin line 3 is empty")
    run_cli(["predict", "-c", checkpoint, "fine", " "], capsys
            ).assert_one_error_line("text 2 is empty")
    run_cli(["predict", "-c", checkpoint, "-"], capsys, stdin=""
            ).assert_one_error_line("no text to classify")


def test_a_reader_that_goes_away_ends_quietly(checkpoint: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`rnnclf predict - | head -1`: the closed pipe is not a crash."""
    def closed(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(predict_command, "_print_predictions", closed)
    result = run_cli(["predict", "-c", checkpoint, "a", "b"], capsys)
    assert result.code in (1, 141)  # click answers EPIPE itself with 1; rnnclf.cli.main with 141
    assert result.stderr == ""
