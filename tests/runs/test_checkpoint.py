"""Checkpoints: round trip, and a one-line RnnclfError (never code execution) for anything else."""

from __future__ import annotations

import os
import pickle
import random
import time
from pathlib import Path

import pytest
import torch

from rnnclf.config import load_config
from rnnclf.data.text import Vocab
from rnnclf.errors import RnnclfError
from rnnclf.models.build import build_model
from rnnclf.runs.atomic import atomic_torch_save
from rnnclf.runs.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    load_checkpoint,
    load_model,
    newest_run_checkpoint,
    save_checkpoint,
)

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def write_checkpoint(path: Path, cell: str = "gru", **extra: object) -> torch.nn.Module:
    config = load_config(None, [f"model.cell={cell}", "model.embedding_dim=8",
                                "model.pretrained_embeddings=", "model.hidden_size=8",
                                "model.pooling=last"])
    vocab = Vocab(["<pad>", "<unk>", *[f"w{i}" for i in range(20)]])
    torch.manual_seed(1)
    model = build_model(config.model, len(vocab), len(LABELS))
    save_checkpoint(path, {"config": config.to_dict(), "vocab": vocab.itos,
                           "label_names": LABELS, "model_state": model.state_dict(), **extra})
    return model.eval()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "best.pt"
    write_checkpoint(path)
    return path


def expect_one_line_error(path: Path, *fragments: str, names_path: bool = True) -> str:
    with pytest.raises(RnnclfError) as excinfo:
        load_model(path)
    message = str(excinfo.value)
    assert "\n" not in message and message, message
    if names_path:
        assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


# --- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_round_trip_gives_identical_logits(tmp_path: Path, cell: str) -> None:
    path = tmp_path / f"{cell}.pt"
    original = write_checkpoint(path, cell)
    loaded = load_model(path)
    assert loaded.label_names == LABELS
    assert loaded.vocab.itos[:3] == ["<pad>", "<unk>", "w0"]
    assert loaded.config.model.cell == cell
    assert not loaded.model.training
    original.backend = loaded.model.backend  # the CPU backend load_model picks: same path
    tokens = torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0]])
    lengths = torch.tensor([4, 2])
    with torch.no_grad():
        assert torch.equal(loaded.model(tokens, lengths), original(tokens, lengths))


def test_payload_has_format_marker(checkpoint: Path) -> None:
    payload = load_checkpoint(checkpoint)
    assert payload["format"] == FORMAT and payload["format_version"] == FORMAT_VERSION
    assert "rnnclf_version" in payload


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    write_checkpoint(path)
    write_checkpoint(path)  # replacing an existing file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# --- malicious pickles -------------------------------------------------------------------------


class CreatesFile:
    """Unpickling this calls open(marker, "w"): the file appears if the pickle is executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def malicious_payload(marker: Path) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "config": {}, "vocab": [],
            "label_names": [], "model_state": {}, "payload": CreatesFile(marker)}


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    def write(path: Path, marker: Path) -> None:
        if writer == "torch.save":
            torch.save(malicious_payload(marker), path)
        else:
            path.write_bytes(pickle.dumps(malicious_payload(marker), protocol=2))

    # The file really is dangerous: an unsafe load of an identical file creates its marker.
    probe_marker, probe = tmp_path / "probe-ran", tmp_path / "probe.pt"
    write(probe, probe_marker)
    if writer == "torch.save":
        torch.load(probe, weights_only=False)
    else:
        pickle.loads(probe.read_bytes())
    assert probe_marker.exists()

    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    write(path, marker)
    message = expect_one_line_error(path)
    assert not marker.exists()
    assert "refused for safety" in message
    with pytest.raises(RnnclfError):
        load_checkpoint(path)
    assert not marker.exists()


# --- damaged and foreign files -------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    expect_one_line_error(path, "not a readable rnnclf checkpoint")


def test_truncated_file(tmp_path: Path, checkpoint: Path) -> None:
    data = checkpoint.read_bytes()
    path = tmp_path / "half.pt"
    path.write_bytes(data[: len(data) // 2])
    expect_one_line_error(path, "not a readable rnnclf checkpoint")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(random.Random(seed).randbytes(4096))
    expect_one_line_error(path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('"1","a title","a description"\n', encoding="utf-8")
    expect_one_line_error(path, "not a readable rnnclf checkpoint")


def test_plain_tensor(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.arange(10), path)
    expect_one_line_error(path, "no rnnclf format marker")


def test_foreign_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    expect_one_line_error(path, "no rnnclf format marker")


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_wrong_format_version(tmp_path: Path, checkpoint: Path, version: object) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    payload["format_version"] = version
    path = tmp_path / "future.pt"
    atomic_torch_save(payload, path)
    expect_one_line_error(path, "format version", repr(version))


def test_missing_keys(tmp_path: Path, checkpoint: Path) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    del payload["vocab"]
    path = tmp_path / "partial.pt"
    atomic_torch_save(payload, path)
    expect_one_line_error(path, "incomplete", "vocab")


def test_state_that_does_not_fit_the_config(tmp_path: Path, checkpoint: Path) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["model"]["hidden_size"] = 9
    path = tmp_path / "edited.pt"
    atomic_torch_save(payload, path)
    expect_one_line_error(path, "does not match")


def test_saved_config_that_no_longer_validates(tmp_path: Path, checkpoint: Path) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["model"]["cell"] = "transformer"
    path = tmp_path / "edited.pt"
    atomic_torch_save(payload, path)
    expect_one_line_error(path, "model.cell", "transformer", names_path=False)


def test_missing_path_and_folder(tmp_path: Path) -> None:
    expect_one_line_error(tmp_path / "nope.pt", "does not exist")
    with pytest.raises(RnnclfError) as excinfo:
        load_model(tmp_path)
    assert "folder" in str(excinfo.value)


# --- newest run ----------------------------------------------------------------------------------


def test_newest_run_checkpoint_picks_the_latest(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("b", "a", "c"):
        (runs / name).mkdir(parents=True)
        (runs / name / "best.pt").write_bytes(b"x")
    now = time.time()
    for age, name in enumerate(("a", "c", "b")):  # a is newest, b oldest
        os.utime(runs / name / "best.pt", (now - age * 100, now - age * 100))
    assert newest_run_checkpoint(runs) == runs / "a" / "best.pt"
    (runs / "a" / "best.pt").unlink()
    assert newest_run_checkpoint(runs) == runs / "c" / "best.pt"


def test_newest_run_checkpoint_breaks_ties_by_folder_name(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    stamp = time.time_ns()
    for name in ("b", "c", "a"):
        (runs / name).mkdir(parents=True)
        (runs / name / "best.pt").write_bytes(b"x")
        os.utime(runs / name / "best.pt", ns=(stamp, stamp))
    assert newest_run_checkpoint(runs) == runs / "c" / "best.pt"


def test_newest_run_checkpoint_without_runs(tmp_path: Path) -> None:
    for runs in (tmp_path / "missing", tmp_path):
        with pytest.raises(RnnclfError) as excinfo:
            newest_run_checkpoint(runs)
        assert "no run with a best.pt" in str(excinfo.value) and "\n" not in str(excinfo.value)
