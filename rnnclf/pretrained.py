"""Pretrained word vectors (GloVe / word2vec text format) -> rows of an embedding table."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rnnclf.data.text import PAD, UNK, Vocab
from rnnclf.errors import RnnclfError


def _is_header(fields: list[str]) -> bool:
    """word2vec text files open with "N D" (word count, dimension)."""
    return len(fields) == 2 and all(field.isdigit() for field in fields)


def read_vectors(path: Path, vocab: Vocab, dim: int) -> tuple[dict[int, torch.Tensor], int]:
    """Vectors of the vocabulary's tokens found in `path`: {token id: (dim,) vector}, lines read.

    An exact match wins over a lowercased one ("Apple" fills "apple" only when "apple" itself
    is missing), since the vocabulary is lowercased but word2vec files often are not.
    Lines of words outside the vocabulary are checked for their length only, not parsed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise RnnclfError(f"model.pretrained_embeddings: {path} is not a file; give the path of "
                          "a GloVe/word2vec text file, or leave it empty")
    found: dict[int, torch.Tensor] = {}
    exact: set[int] = set()
    lines = 0
    try:
        with path.open(encoding="utf-8", errors="strict") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.rstrip("\n").rstrip().split(" ")
                if number == 1 and _is_header(fields):
                    if int(fields[1]) != dim:
                        raise RnnclfError(
                            f"{path}: vectors have {fields[1]} dimensions (header) but "
                            f"model.embedding_dim is {dim}; set model.embedding_dim={fields[1]}")
                    continue
                if not fields or fields == [""]:
                    continue
                lines += 1
                if len(fields) - 1 != dim:
                    raise RnnclfError(
                        f"{path} line {number}: {len(fields) - 1} numbers after the word but "
                        f"model.embedding_dim is {dim}; set model.embedding_dim={len(fields) - 1} "
                        "or use vectors of that size")
                word = fields[0]
                index = vocab.stoi.get(word)
                is_exact = index is not None
                if index is None:
                    index = vocab.stoi.get(word.lower())
                if index is None or index in exact or (not is_exact and index in found):
                    continue
                if word in (PAD, UNK):
                    continue
                try:
                    found[index] = torch.tensor([float(value) for value in fields[1:]])
                except ValueError:
                    raise RnnclfError(f"{path} line {number}: the values after {word[:40]!r} are "
                                      "not all numbers; give a GloVe/word2vec TEXT file "
                                      "(word then numbers)") from None
                if is_exact:
                    exact.add(index)
    except UnicodeDecodeError:
        raise RnnclfError(f"{path} is not UTF-8 text; give a GloVe/word2vec TEXT file (binary "
                          ".bin files are not read)") from None
    except OSError as error:
        raise RnnclfError(f"cannot read {path}: {error.strerror}; check the path and "
                          "permissions") from None
    if lines == 0:
        raise RnnclfError(f"{path} holds no word vectors; give a GloVe/word2vec text file")
    return found, lines


def load_pretrained(embedding: nn.Embedding, path: Path, vocab: Vocab) -> float:
    """Copy the vectors found in `path` into `embedding`; returns the share of the vocabulary
    (without <pad>/<unk>) that the file covered. Tokens it lacks keep their random init."""
    found, _ = read_vectors(path, vocab, embedding.embedding_dim)
    if found:
        indices = torch.tensor(sorted(found))
        with torch.no_grad():
            embedding.weight[indices] = torch.stack([found[i] for i in indices.tolist()]).to(
                embedding.weight.dtype).to(embedding.weight.device)
    return len(found) / max(1, len(vocab) - 2)
