"""Hostile and broken files: checkpoints that try to run code, damaged checkpoints, malformed
data rows, and bad config files each end in one clear line, never a traceback."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from robustness_support import csv_bytes, generated_rows, run_cli, tiny_overrides, write_dataset

from rnnclf.config import load_config
from rnnclf.data.agnews import read_rows
from rnnclf.errors import RnnclfError
from rnnclf.runs.checkpoint import FORMAT, load_checkpoint
from rnnclf.training.trainer import fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One tiny trained run (1 epoch) shared by this module's tests; yields its best.pt."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNCLF_CACHE_DIR", str(root / "cache"))
        data = write_dataset(root / "data")
        fit(load_config(None, tiny_overrides(data, root / "runs", epochs=1)), log=lambda *a: None)
        yield root / "runs" / "tiny" / "best.pt"


# --- checkpoints that try to run code -------------------------------------------------------


class CreatesMarker:
    """Unpickling this calls open(marker, "w"): the file appearing proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def hostile_payload(marker: Path) -> dict[str, object]:
    return {"format": FORMAT, "format_version": 1, "config": {}, "vocab": ["<pad>", "<unk>"],
            "label_names": ["a", "b"], "model_state": {}, "payload": CreatesMarker(marker)}


def write_hostile(path: Path, marker: Path, legacy: bool) -> Path:
    # torch's current zip format, or its legacy (pre-1.6) pickle-based format
    torch.save(hostile_payload(marker), path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["torch-zip", "torch-legacy"])
def test_hostile_checkpoint_never_runs_code(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            legacy: bool) -> None:
    # The control: this file really does run code when loaded the unsafe way.
    control_marker = tmp_path / "control-marker"
    control = write_hostile(tmp_path / "control.pt", control_marker, legacy)
    torch.load(control, weights_only=False)
    assert control_marker.exists()

    marker = tmp_path / "marker"
    evil = write_hostile(tmp_path / "evil.pt", marker, legacy)
    run_dir = tmp_path / "evil-run"
    run_dir.mkdir()
    write_hostile(run_dir / "last.pt", marker, legacy)
    for args in (["predict", "-c", evil, "hello world"], ["eval", evil],
                 ["train", "--resume", run_dir]):
        line = run_cli(args, capsys).assert_one_error_line("refused for safety")
        assert "evil" in line
        assert not marker.exists(), args


def test_hostile_data_cache_is_ignored_not_executed(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The tokenized-data cache is loaded weights_only too: a planted file is rebuilt over."""
    data = write_dataset(tmp_path / "data")
    args = ["train", *tiny_overrides(data, tmp_path / "runs", epochs=1)]
    assert run_cli(args, capsys).code == 0
    marker = tmp_path / "marker"
    caches = list((tmp_path / "cache").glob("*.pt"))
    assert caches
    for cache in caches:
        torch.save({"train": CreatesMarker(marker)}, cache)
    assert run_cli([*args, "--overwrite"], capsys).code == 0
    assert not marker.exists()


# --- damaged or foreign checkpoints ---------------------------------------------------------


def damaged_checkpoints(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its error line must contain)."""
    whole = good.read_bytes()
    payload = load_checkpoint(good)
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, content: bytes | None, phrase: str, obj: object = None) -> None:
        path = folder / f"{name}.pt"
        if content is not None:
            path.write_bytes(content)
        else:
            torch.save(obj, path)
        cases[name] = (path, phrase)

    add("empty", b"", "not a readable rnnclf checkpoint: the file is empty")
    add("truncated", whole[: len(whole) // 2], "truncated, damaged")
    add("one-byte", whole[:1], "truncated, damaged")
    add("text", b"epoch,loss\n1,0.5\n", "truncated, damaged")
    add("csv-data", csv_bytes(generated_rows(5)), "not a readable rnnclf checkpoint")
    add("bare-pickle", pickle.dumps(hostile_payload(folder / "marker")),
        "not a readable rnnclf checkpoint")
    add("plain-tensor", None, "no rnnclf format marker", torch.zeros(3))
    add("bare-state-dict", None, "no rnnclf format marker", payload["model_state"])
    add("future-version", None, "format version 99", {**payload, "format_version": 99})
    add("no-version", None, "format version None",
        {k: v for k, v in payload.items() if k != "format_version"})
    add("missing-vocab", None, "missing vocab",
        {k: v for k, v in payload.items() if k != "vocab"})
    edited = {**payload, "model_state": {k: v[..., :1] if v.ndim else v
                                         for k, v in payload["model_state"].items()}}
    add("edited-shapes", None, "does not match the model", edited)
    add("bad-config", None, "cannot use (model.cell",
        {**payload, "config": {"model": {"cell": "tcn"}}})
    add("vocab-not-tokens", None, "does not match the model", {**payload, "vocab": ["x"]})
    return cases


def test_damaged_checkpoints_give_one_line_each(trained: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for name, (path, phrase) in damaged_checkpoints(trained, tmp_path).items():
        assert not (tmp_path / "marker").exists()
        for args in (["predict", "-c", path, "some words"], ["eval", path]):
            result = run_cli(args, capsys)
            try:
                result.assert_one_error_line(phrase, str(path))
            except AssertionError as failure:
                raise AssertionError(f"{name}: {failure}") from None
    run_cli(["predict", "-c", tmp_path, "x"], capsys).assert_one_error_line("is a folder")
    run_cli(["predict", "-c", tmp_path / "none.pt", "x"], capsys
            ).assert_one_error_line("does not exist")


# --- malformed data rows --------------------------------------------------------------------

CLEAN = [("1", "Rebels sign treaty", "the summit ended"), ("2", "Coach quits", "league news"),
         ("3", "Shares up", "profit rose"), ("4", "Linux chip", "nasa server")]


def data_file(folder: Path, bad: bytes, name: str = "train.csv", bom: bool = False,
              crlf: bool = False) -> Path:
    """Two clean rows, the bad bytes as a line of their own, then two more clean rows."""
    first, second = csv_bytes(CLEAN[:2]), csv_bytes(CLEAN[2:])
    content = first + bad + b"\n" + second
    if crlf:
        content = content.replace(b"\n", b"\r\n")
    path = folder / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + content)
    return path


BAD_ROWS = {
    "two-columns": (b'"1","only a title"', "expected 3 columns"),
    "four-columns": (b'"1","a","b","c"', "expected 3 columns"),
    "label-zero": (b'"0","title","text"', "not one of 1, 2, 3, 4"),
    "label-five": (b'"5","title","text"', "not one of 1, 2, 3, 4"),
    "label-word": (b'"World","title","text"', "not one of 1, 2, 3, 4"),
    "empty-text": (b'"2","",""', "both empty"),
    "blank-text": (b'"2","  ","\t"', "both empty"),
    "invalid-utf8": (b'"3","caf\xe9 prices","rise \xff\xfe"', "not valid UTF-8"),
    "ten-mb-field": (b'"4","huge","' + b"x" * 10_000_000 + b'"', "longer than 1,000,000"),
    # An unclosed quote runs on into the next lines: they must still be read as rows.
    "unclosed-quote": (b'"1","title","text that never ends', "expected 3 columns"),
    "stray-quote": (b'"1","say "hi" there","text', "expected 3 columns"),
    "ten-mb-multiline": (b'"4","huge","' + (b"y" * 999 + b"\n") * 10_000, "longer than"),
}


@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_bad_row_names_file_and_line_or_is_skipped(tmp_path: Path, name: str) -> None:
    bad, phrase = BAD_ROWS[name]
    path = data_file(tmp_path, bad)
    with pytest.raises(RnnclfError) as stopped:
        read_rows(path)
    message = str(stopped.value)
    assert f"{path}, line 3: " in message and phrase in message
    assert "data.on_bad_row=skip" in message
    assert "\n" not in message
    rows, skipped = read_rows(path, "skip")
    assert [(str(r.label + 1), r.text) for r in rows] == [(a, f"{b} {c}") for a, b, c in CLEAN]
    assert "line 3" in skipped[0]
    assert len(skipped) == (1 if name != "ten-mb-multiline" else 10_000)


@pytest.mark.parametrize("bom,crlf", [(True, False), (False, True), (True, True)])
def test_bom_and_crlf_files_are_clean(tmp_path: Path, bom: bool, crlf: bool) -> None:
    text = "Caf\u00e9 \u6771\u4eac \U0001f600"
    path = data_file(tmp_path, csv_bytes([("1", text, 'say "hi"')]).rstrip(b"\n"), bom=bom,
                     crlf=crlf)
    rows, skipped = read_rows(path)
    assert skipped == []
    assert [r.text for r in rows][2] == f'{text} say "hi"'
    assert [r.label for r in rows] == [0, 1, 0, 2, 3]
    assert all("\r" not in r.text and "\ufeff" not in r.text for r in rows)


def test_many_bad_rows_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Default: the first bad row stops `train` with file and line. on_bad_row=skip: the run
    trains on every clean row and says how many rows it skipped."""
    folder = tmp_path / "data"
    folder.mkdir()
    clean_rows = generated_rows(120)
    bad_lines = [b'"9","bad label","x"', b'"1","two columns"', b'"2","",""',
                 b'"3","caf\xe9","\xff"', b'"4","long","' + b"y" * 2_000_000 + b'"']
    lines = csv_bytes(clean_rows).splitlines(keepends=True)
    content = b"".join(lines[:10]) + b"\n".join(bad_lines) + b"\n" + b"".join(lines[10:])
    (folder / "train.csv").write_bytes(content)
    args = ["train", *tiny_overrides(folder, tmp_path / "runs", epochs=1)]
    run_cli(args, capsys).assert_one_error_line(f"{folder / 'train.csv'}, line 11", "label")
    result = run_cli([*args, "data.on_bad_row=skip"], capsys)
    assert result.code == 0, result.stderr
    assert "5 bad rows skipped" in result.stdout
    summary = (tmp_path / "runs" / "tiny" / "summary.json").read_text()
    assert '"skipped_rows": 5' in summary
    assert '"train_rows": 108' in summary and '"val_rows": 12' in summary  # all 120 clean rows


def test_unreadable_data_files_give_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    base = tiny_overrides(folder, tmp_path / "runs", epochs=1) + ["data.download=false"]
    run_cli(["train", *base], capsys).assert_one_error_line("train.csv is missing")
    (folder / "train.csv").mkdir()
    run_cli(["train", *base], capsys).assert_one_error_line("is not a file")
    (folder / "train.csv").rmdir()
    (folder / "train.csv").write_bytes(b"")
    run_cli(["train", *base], capsys).assert_one_error_line("holds no usable rows")
    (folder / "train.csv").write_bytes(b"\x00\x01\x02" * 1000)
    run_cli(["train", *base], capsys).assert_one_error_line("train.csv, line 1")


# --- bad config files -----------------------------------------------------------------------

BAD_CONFIGS = {
    "invalid-yaml": ("model: {cell: gru\n", "invalid YAML at line"),
    "tab-indent": ("model:\n\tcell: gru\n", "invalid YAML"),
    "a-list": ("- model\n- optim\n", "must be a mapping"),
    "a-scalar": ("42\n", "must be a mapping"),
    "section-list": ("model: [gru, lstm]\n", "section 'model' must be a mapping"),
    "unknown-section": ("modle:\n  cell: gru\n", "did you mean 'model'"),
    "unknown-key": ("model:\n  hiden_size: 8\n", "did you mean 'hidden_size'"),
    "string-for-int": ("model:\n  hidden_size: big\n", "model.hidden_size"),
    "float-for-int": ("train:\n  batch_size: 8.5\n", "whole number"),
    "bool-for-int": ("train:\n  epochs: true\n", "whole number"),
    "string-for-bool": ("model:\n  bidirectional: maybe\n", "true or false"),
    "list-for-float": ("optim:\n  lr: [0.1]\n", "use a number"),
    "nan-lr": ("optim:\n  lr: .nan\n", "finite number"),
    "zero-hidden": ("model:\n  hidden_size: 0\n", "at least 1"),
    "negative-batch": ("train:\n  batch_size: -8\n", "at least 1"),
    "zero-epochs": ("train:\n  epochs: 0\n", "at least 1"),
    "zero-lr": ("optim:\n  lr: 0\n", "greater than 0"),
    "dropout-one": ("model:\n  dropout: 1.0\n", "less than 1"),
    "dropout-negative": ("model:\n  dropout: -0.1\n", "at least 0"),
    "unknown-cell": ("model:\n  cell: transformer\n", "choose one of rnn, lstm, gru"),
    "unknown-pooling": ("model:\n  pooling: median\n", "choose one of last, mean, max, attention"),
    "bad-device": ("train:\n  device: tpu\n", "train.device"),
    "date-for-name": ("train:\n  name: 2024-01-01\n", "text value"),
    "python-tag": ("model: !!python/object/apply:os.system ['true']\n", "invalid YAML"),
    "not-utf8": (b"model:\n  cell: \xff\xfe\n", "cannot read config file"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     name: str) -> None:
    content, phrase = BAD_CONFIGS[name]
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    run_cli(["train", path, "--print-config"], capsys).assert_one_error_line(phrase)


BAD_OVERRIDES = {
    "no-equals": (["model.cell"], "does not exist"),
    "no-section": (["cell=lstm"], "section.key=value"),
    "too-deep": (["model.rnn.cell=lstm"], "section.key=value"),
    "unknown-key": (["model.cel=lstm"], "did you mean 'cell'"),
    "unknown-section": (["trian.epochs=2"], "did you mean 'train'"),
    "bad-value": (["model.num_layers=two"], "model.num_layers"),
    "empty-value": (["train.epochs="], "train.epochs"),
    "yaml-junk": (["train.epochs=[1, 2"], "train.epochs"),
    "set-option": (["--set", "model.dropout=2"], "less than 1"),
    "over-scalar-section": (["model.cell=gru"], "section 'model' must be a mapping"),
}


@pytest.mark.parametrize("name", list(BAD_OVERRIDES))
def test_bad_override_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  name: str) -> None:
    overrides, phrase = BAD_OVERRIDES[name]
    args = ["train", "--print-config", *overrides]
    if name == "over-scalar-section":
        path = tmp_path / "scalar-section.yaml"
        path.write_text("model: 5\n")
        args = ["train", path, "--print-config", *overrides]
    run_cli(args, capsys).assert_one_error_line(phrase)


def test_config_path_problems_are_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["train", tmp_path / "missing.yaml"], capsys).assert_one_error_line("does not exist")
    run_cli(["train", tmp_path], capsys).assert_one_error_line("is a folder")
    (tmp_path / "empty.yaml").write_text("")
    result = run_cli(["train", tmp_path / "empty.yaml", "--print-config"], capsys)
    assert result.code == 0 and "cell: gru" in result.stdout  # empty file: the defaults
