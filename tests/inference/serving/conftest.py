"""Fixtures of the serve tests: two tiny checkpoints (different seeds, so different digests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from robustness_support import tiny_overrides, write_dataset

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")


@dataclass(frozen=True)
class TinyCheckpoints:
    first: Path  # seed 0
    second: Path  # seed 1: the "new training" that replaces the first


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    from rnnclf.config import load_config
    from rnnclf.training.trainer import fit

    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNCLF_CACHE_DIR", str(root / "cache"))
        data = write_dataset(root / "data")
        for seed, name in ((0, "first"), (1, "second")):
            overrides = tiny_overrides(data, root / "runs", name=name, epochs=1,
                                       **{"data.max_length": 32, "train.seed": seed})
            fit(load_config(None, overrides), log=lambda *a: None)
    return TinyCheckpoints(root / "runs" / "first" / "best.pt",
                           root / "runs" / "second" / "best.pt")


@pytest.fixture
def served_checkpoint(tiny_checkpoints: TinyCheckpoints, tmp_path: Path) -> Path:
    """A copy of the first checkpoint that a test may replace or break."""
    target = tmp_path / "served" / "best.pt"
    target.parent.mkdir()
    target.write_bytes(tiny_checkpoints.first.read_bytes())
    return target
