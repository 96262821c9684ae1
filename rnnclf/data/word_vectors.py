"""Pretrained word vectors -> rows of an embedding table (and extra vocabulary words).

`model.pretrained_embeddings` is either the path of a GloVe / word2vec text file or the name of
vectors that ship as a Python package (PACKAGED_VECTORS), such as the default's glove.6B.50d.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rnnclf.config.schema import ModelConfig
from rnnclf.data import glove_package
from rnnclf.data.text import PAD, UNK, Vocab
from rnnclf.errors import RnnclfError

PACKAGED_VECTORS = {glove_package.NAME: glove_package}


def is_packaged(spec: str) -> bool:
    return spec in PACKAGED_VECTORS


def _packaged_table(spec: str) -> tuple[list[str], torch.Tensor]:
    """(words, vectors) of packaged vectors, read and checked anew on each call. Not kept:
    holding 400,000 words and 80 MB of vectors for the whole run would cost training memory."""
    return PACKAGED_VECTORS[spec].load()


def check_spec(spec: str, embedding_dim: int) -> None:
    """Fail early, with one line, when the vectors are missing or (packaged ones) of the wrong
    size. A text file's contents are checked while it is read."""
    if not is_packaged(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            known = ", ".join(sorted(PACKAGED_VECTORS))
            raise RnnclfError(f"model.pretrained_embeddings: {path} is not a file; give the path "
                              f"of a GloVe/word2vec text file, a packaged name ({known}), or "
                              "leave it empty")
        return
    source = PACKAGED_VECTORS[spec]
    if embedding_dim != source.DIM:
        raise RnnclfError(f"model.pretrained_embeddings={spec} has {source.DIM}-dimensional "
                          f"vectors but model.embedding_dim is {embedding_dim}; set "
                          f"model.embedding_dim={source.DIM}, or model.pretrained_embeddings= "
                          "(empty) to start from random vectors")
    source.locate()


def vocabulary_words(spec: str, count: int) -> list[str]:
    """The first `count` words of the vectors (the most frequent ones, in GloVe and word2vec
    files), to add to the vocabulary so that words training never saw keep their vector."""
    if not spec or count <= 0:
        return []
    if is_packaged(spec):
        return _packaged_table(spec)[0][:count]
    path = Path(spec).expanduser()
    words: list[str] = []
    try:
        with path.open(encoding="utf-8", errors="strict") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.split(" ", 2)
                if (number == 1 and _is_header(line.split())) or not fields[0].strip():
                    continue
                words.append(fields[0])
                if len(words) >= count:
                    break
    except UnicodeDecodeError:
        raise RnnclfError(f"{path} is not UTF-8 text; give a GloVe/word2vec TEXT file (binary "
                          ".bin files are not read)") from None
    except OSError as error:
        raise RnnclfError(f"model.pretrained_embeddings: cannot read {path} "
                          f"({error.strerror}); give the path of a GloVe/word2vec text file, "
                          "or leave it empty") from None
    return words


def extra_vocabulary(model_config: ModelConfig) -> list[str]:
    """Vector words the vocabulary takes beside the training split's (model.pretrained_vocab)."""
    return vocabulary_words(model_config.pretrained_embeddings, model_config.pretrained_vocab)


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


def _packaged_vectors(spec: str, vocab: Vocab) -> dict[int, torch.Tensor]:
    """The same exact-before-lowercase match as read_vectors, over a packaged table."""
    words, vectors = _packaged_table(spec)
    found: dict[int, torch.Tensor] = {}
    exact: set[int] = set()
    for row, word in enumerate(words):
        index = vocab.stoi.get(word)
        is_exact = index is not None
        if index is None:
            index = vocab.stoi.get(word.lower())
        if index is None or index in exact or (not is_exact and index in found) \
                or word in (PAD, UNK):
            continue
        found[index] = vectors[row]
        if is_exact:
            exact.add(index)
    return found


def load_pretrained(embedding: nn.Embedding, spec: str | Path, vocab: Vocab) -> float:
    """Copy the vectors of `spec` (a packaged name or a text file) into `embedding`; returns the
    share of the vocabulary (without <pad>/<unk>) they covered. Tokens they lack keep their
    random init."""
    if isinstance(spec, str) and is_packaged(spec):
        check_spec(spec, embedding.embedding_dim)
        found = _packaged_vectors(spec, vocab)
    else:
        found, _ = read_vectors(Path(spec), vocab, embedding.embedding_dim)
    if found:
        indices = torch.tensor(sorted(found))
        with torch.no_grad():
            embedding.weight[indices] = torch.stack([found[i] for i in indices.tolist()]).to(
                embedding.weight.dtype).to(embedding.weight.device)
    return len(found) / max(1, len(vocab) - 2)
