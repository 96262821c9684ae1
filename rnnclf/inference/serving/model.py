"""A checkpoint loaded for serving: the Predictor plus the SHA-256 digest of the very bytes it
was built from, and the file identity the reloader compares against."""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from rnnclf import __version__
from rnnclf.errors import RnnclfError
from rnnclf.inference.predictor import Predictor

FileKey = tuple[int, int, int, int]  # (device, inode, size, mtime_ns): "is it still that file?"


@dataclass(frozen=True)
class LoadOptions:
    """How every checkpoint of this server is loaded (the first one and each reload)."""

    device: str = "auto"
    precision: str = "fp32"
    quantize: str | None = None


@dataclass
class ServedModel:
    predictor: Predictor
    path: Path
    sha256: str
    file_key: FileKey
    model_section: dict[str, Any]  # the checkpoint's model config: cell, sizes, n-grams
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def labels(self) -> list[str]:
        return list(self.predictor.label_names)

    def describe(self) -> dict[str, Any]:
        """What GET /v1/model reports."""
        predictor = self.predictor
        parameters = sum(tensor.numel() for tensor in predictor.model.parameters())
        return {
            "labels": self.labels,
            "checkpoint": str(self.path),
            "checkpoint_sha256": self.sha256,
            "loaded_at": self.loaded_at,
            "rnnclf_version": __version__,
            "config": {"model": self.model_section, "max_length": predictor.max_length,
                       "clean": predictor.clean, "parameters": parameters,
                       "device": str(predictor.device), "precision": predictor.precision},
        }


def file_key(stat: os.stat_result) -> FileKey:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def read_checkpoint_bytes(path: Path) -> tuple[bytes, FileKey]:
    """The file's bytes, read once, and the identity of the file they came from."""
    try:
        with open(path, "rb") as handle:
            before = file_key(os.fstat(handle.fileno()))
            data = handle.read()
            after = file_key(os.fstat(handle.fileno()))
    except IsADirectoryError:
        raise RnnclfError(f"checkpoint {path} is a folder; give runs/<name>/best.pt") from None
    except FileNotFoundError:
        raise RnnclfError(f"checkpoint {path} does not exist; give the path of a best.pt "
                          "written by `rnnclf train`") from None
    except OSError as error:
        raise RnnclfError(f"cannot read checkpoint {path}: {error.strerror}") from None
    if before != after:  # written in place while we read: these bytes may be torn
        raise RnnclfError(f"checkpoint {path} changed while it was being read; write it "
                          "atomically (temp file + rename)")
    return data, after


def load_served_model(path: Path, options: LoadOptions) -> ServedModel:
    """Load `path` once; the digest is of the same bytes the model is built from."""
    data, key = read_checkpoint_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    predictor, model_section = _predictor_from_bytes(data, path, options)
    # The first call pays one-off set-up (kernels, allocator); pay it here, not in a request.
    # It also proves a new checkpoint can predict before it replaces the old one.
    predictor.predict(["warm up the model"])
    return ServedModel(predictor, path, digest, key, model_section)


def _predictor_from_bytes(data: bytes, path: Path,
                          options: LoadOptions) -> tuple[Predictor, dict[str, Any]]:
    """Predictor takes a path: give it a private copy of `data`, so that a file replaced
    between hashing and loading cannot make the digest lie."""
    extra: dict[str, Any] = {}
    if options.quantize is not None:
        if "quantize" not in inspect.signature(Predictor.__init__).parameters:
            raise RnnclfError("--quantize needs an rnnclf with int8 inference; leave it out")
        extra["quantize"] = options.quantize
    scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # RAM, not disk
    with tempfile.TemporaryDirectory(prefix="rnnclf-serve-", dir=scratch) as folder:
        snapshot = Path(folder) / path.name
        snapshot.write_bytes(data)
        try:
            predictor = Predictor(snapshot, options.device, options.precision, **extra)
        except RnnclfError as error:
            raise RnnclfError(str(error).replace(str(snapshot), str(path))) from None
        return predictor, _model_section(snapshot)


def _model_section(snapshot: Path) -> dict[str, Any]:
    """The model section of a checkpoint that has just loaded (mmap: the tensors stay unread)."""
    payload = torch.load(snapshot, map_location="cpu", weights_only=True, mmap=True)
    section = payload["config"].get("model", {})
    return {key: value for key, value in section.items()
            if isinstance(value, (str, int, float, bool)) or value is None}
