"""Pretrained word vectors: loading, coverage in the log and summary, freezing, bad files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from agnews_support import write_agnews_csv

from rnnclf.config import load_config
from rnnclf.data.text import Vocab
from rnnclf.data.word_vectors import load_pretrained, read_vectors
from rnnclf.errors import RnnclfError
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.training.trainer import fit

DIM = 8
WORDS = {1: ["war", "minister", "election"], 2: ["goal", "match", "coach"],
         3: ["shares", "profit", "bank"], 4: ["software", "chip", "internet"]}


def _write_csv(path: Path, rows: int = 200) -> None:
    rng = random.Random(0)
    lines = []
    for index in range(rows):
        label = index % 4 + 1
        words = [rng.choice(WORDS[label]) for _ in range(6)]
        lines.append((str(label), " ".join(words[:2]), " ".join(words[2:])))
    write_agnews_csv(path, lines)


def _write_vectors(path: Path, words: list[str], dim: int = DIM, header: bool = False) -> None:
    lines = [f"{len(words)} {dim}"] if header else []
    for number, word in enumerate(words):
        lines.append(" ".join([word] + [f"{(number + 1) * 0.1 + k * 0.01:.4f}"
                                        for k in range(dim)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _config(tmp_path: Path, vectors: Path | str, freeze: bool, *extra: str):
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    _write_csv(data_dir / "train.csv")
    return load_config(None, [
        f"data.dir={data_dir}", f"data.cache_dir={tmp_path / 'cache'}", "data.download=false",
        "data.min_freq=1", f"model.embedding_dim={DIM}", "model.hidden_size=8",
        f"model.pretrained_embeddings={vectors}", f"model.freeze_embeddings={str(freeze).lower()}",
        f"train.runs_dir={tmp_path / 'runs'}", "train.name=pre", "train.epochs=1",
        "train.batch_size=32", "train.progress=false", "train.device=cpu",
        "train.num_threads=1", *extra,
    ])


@pytest.mark.parametrize("header", [False, True])
def test_read_vectors_matches_vocab_and_tolerates_header(tmp_path: Path, header: bool) -> None:
    vocab = Vocab(["<pad>", "<unk>", "goal", "bank", "chip"])
    vectors = tmp_path / "vectors.txt"
    _write_vectors(vectors, ["goal", "Bank", "zebra"], header=header)
    found, lines = read_vectors(vectors, vocab, DIM)
    assert lines == 3
    assert sorted(found) == [2, 3]  # "Bank" fills "bank" through its lowercase form
    assert found[2][0].item() == pytest.approx(0.1)


def test_exact_match_beats_lowercase(tmp_path: Path) -> None:
    vocab = Vocab(["<pad>", "<unk>", "apple"])
    vectors = tmp_path / "vectors.txt"
    _write_vectors(vectors, ["Apple", "apple"])
    found, _ = read_vectors(vectors, vocab, DIM)
    assert found[2][0].item() == pytest.approx(0.2)  # the second line, "apple" itself


def test_coverage_share_and_rows_copied(tmp_path: Path) -> None:
    vocab = Vocab(["<pad>", "<unk>", "goal", "bank", "chip", "war"])
    vectors = tmp_path / "vectors.txt"
    _write_vectors(vectors, ["goal", "war", "unrelated"])
    embedding = torch.nn.Embedding(len(vocab), DIM, padding_idx=0)
    coverage = load_pretrained(embedding, vectors, vocab)
    assert coverage == pytest.approx(2 / 4)
    assert embedding.weight[2, 0].item() == pytest.approx(0.1)
    assert embedding.weight[5, 0].item() == pytest.approx(0.2)
    assert torch.all(embedding.weight[0] == 0)  # padding row untouched


@pytest.mark.parametrize("header", [False, True])
def test_wrong_dimension_is_one_line_error(tmp_path: Path, header: bool) -> None:
    vectors = tmp_path / "vectors.txt"
    _write_vectors(vectors, ["goal", "bank"], dim=5, header=header)
    with pytest.raises(RnnclfError, match="embedding_dim") as caught:
        read_vectors(vectors, Vocab(["<pad>", "<unk>", "goal"]), DIM)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary", b"goal " + b"x " * DIM + b"\n", b""])
def test_unreadable_files_are_one_line_errors(tmp_path: Path, content: bytes) -> None:
    vectors = tmp_path / "vectors.bin"
    vectors.write_bytes(content)
    with pytest.raises(RnnclfError) as caught:
        read_vectors(vectors, Vocab(["<pad>", "<unk>", "goal"]), DIM)
    assert "\n" not in str(caught.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="not a file"):
        read_vectors(tmp_path / "nope.txt", Vocab(["<pad>", "<unk>"]), DIM)


def test_training_reports_coverage_and_frozen_stays_frozen(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.txt"
    covered = ["war", "goal", "shares", "chip", "notinvocab"]
    _write_vectors(vectors, covered)
    messages: list[str] = []
    summary = fit(_config(tmp_path, vectors, freeze=True), log=messages.append)
    assert summary["pretrained_coverage"] == pytest.approx(4 / (summary["vocab_size"] - 2))
    assert any("covered" in message for message in messages)
    saved = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())
    assert saved["pretrained_coverage"] == pytest.approx(summary["pretrained_coverage"])
    payload = load_checkpoint(Path(summary["run_dir"]) / "last.pt")
    table = payload["model_state"]["embedding.weight"]
    itos = payload["vocab"]
    for number, word in enumerate(covered[:4]):
        expected = torch.tensor([(number + 1) * 0.1 + k * 0.01 for k in range(DIM)])
        torch.testing.assert_close(table[itos.index(word)], expected, atol=1e-4, rtol=0)


def test_unfrozen_embeddings_train(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.txt"
    _write_vectors(vectors, ["war", "goal"])
    summary = fit(_config(tmp_path, vectors, freeze=False), log=lambda message: None)
    payload = load_checkpoint(Path(summary["run_dir"]) / "last.pt")
    row = payload["model_state"]["embedding.weight"][payload["vocab"].index("war")]
    start = torch.tensor([0.1 + k * 0.01 for k in range(DIM)])
    assert not torch.allclose(row, start, atol=1e-4)


def test_pretrained_vocab_adds_vector_words_training_never_saw(tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.txt"
    unseen = ["treaty", "striker", "dividend"]  # in no training text
    _write_vectors(vectors, ["war", *unseen, "goal", "rare"])
    summary = fit(_config(tmp_path, vectors, False, "model.pretrained_vocab=4"),
                  log=lambda message: None)
    payload = load_checkpoint(Path(summary["run_dir"]) / "best.pt")
    itos = payload["vocab"]
    assert itos[-3:] == unseen  # appended after the training words, in the file's order
    assert "rare" not in itos  # beyond the first 4 lines of the file
    table = payload["model_state"]["embedding.weight"]
    for number, word in enumerate(unseen, start=1):  # no text used them: still the vector
        expected = torch.tensor([(number + 1) * 0.1 + k * 0.01 for k in range(DIM)])
        torch.testing.assert_close(table[itos.index(word)], expected, atol=1e-6, rtol=0)
    plain = fit(_config(tmp_path, vectors, False, "train.name=plain"), log=lambda message: None)
    assert plain["vocab_size"] == summary["vocab_size"] - 3  # a separate cache entry


def test_packaged_vectors_need_their_dimension(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="set model.embedding_dim=50") as caught:
        fit(_config(tmp_path, "glove.6B.50d", False), log=lambda message: None)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "runs" / "pre").exists()


def test_packaged_vectors_fill_the_embedding(tmp_path: Path) -> None:
    from rnnclf.data.glove_package import load

    words, vectors = load()
    vocab = Vocab(["<pad>", "<unk>", "the", "oil", "qqqzzzxx"])
    embedding = torch.nn.Embedding(len(vocab), 50, padding_idx=0)
    coverage = load_pretrained(embedding, "glove.6B.50d", vocab)
    assert coverage == pytest.approx(2 / 3)
    torch.testing.assert_close(embedding.weight[3], vectors[words.index("oil")])
    torch.testing.assert_close(embedding.weight[2], vectors[0])


def test_missing_vectors_file_fails_before_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="is not a file") as caught:
        fit(_config(tmp_path, tmp_path / "nope.txt", False), log=lambda message: None)
    assert "glove.6B.50d" in str(caught.value)  # names the packaged choice too
    assert not (tmp_path / "runs" / "pre").exists()


def test_pretrained_vocab_without_vectors_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="pretrained_embeddings is empty"):
        fit(_config(tmp_path, "", False, "model.pretrained_vocab=10"), log=lambda message: None)
