"""Shared fixtures: the real AG News files (or a skip), a generated tiny AG News, and isolation.

Every test runs with RNNCLF_CACHE_DIR, RNNCLF_RUNS_DIR and RNNCLF_DATA_DIR pointing into its own
tmp_path and with tmp_path as the working directory, so no test reads or writes ~/.cache, ./runs
of the repository, or anything a developer keeps there: test files need no isolation fixture of
their own. The generated AG News data comes from agnews_support.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from agnews_support import make_tiny_agnews
from kernel_support import KernelCalls
from robustness_support import write_dataset


def pytest_configure(config: pytest.Config) -> None:
    # The models here are tiny: one thread is many times faster than two on a busy machine.
    import torch

    torch.set_num_threads(1)


SHARED_AG_NEWS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ag_news"


@dataclass
class IsolatedEnv:
    root: Path  # the working directory of the test (tmp_path)
    cache_dir: Path
    runs_dir: Path
    data_dir: Path


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IsolatedEnv]:
    """Cache, runs and default data folders inside tmp_path; tmp_path is the working directory.

    The runs folder is tmp_path/runs, the same as the default train.runs_dir ("runs") resolved
    from the working directory, so a run trained here is where eval/predict look for it.
    """
    env = IsolatedEnv(tmp_path, tmp_path / "cache", tmp_path / "runs", tmp_path / "default_data")
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(env.cache_dir))
    monkeypatch.setenv("RNNCLF_RUNS_DIR", str(env.runs_dir))
    monkeypatch.setenv("RNNCLF_DATA_DIR", str(env.data_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))
    monkeypatch.delenv("RNNCLF_AGNEWS_MIRROR", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for subprocesses: tiny models, busy machine
    monkeypatch.chdir(tmp_path)
    yield env


@pytest.fixture
def ag_news_dir() -> Path:
    """The shared real AG News folder (test.csv, train_subset.csv, ...), or skip."""
    if not (SHARED_AG_NEWS / "test.csv").is_file():
        pytest.skip(f"shared AG News data not found at {SHARED_AG_NEWS}")
    return SHARED_AG_NEWS


@pytest.fixture
def tiny_agnews(tmp_path: Path) -> Path:
    """A generated AG News folder in tmp_path: train.csv (400 rows) and test.csv (80 rows)."""
    return make_tiny_agnews(tmp_path / "tiny_agnews")


@pytest.fixture(scope="session")
def tiny_agnews_factory():
    """make_tiny_agnews, for module-scoped fixtures that cannot use the function-scoped one."""
    return make_tiny_agnews


@pytest.fixture(params=["c", "aten"])
def gate_math(request: pytest.FixtureRequest,
              monkeypatch: pytest.MonkeyPatch) -> KernelCalls | None:
    """Runs a test once with rnnclf's C gate kernels (counting their calls; skipped where they
    were not built) and once with the same math in ATen ops."""
    from rnnclf.accel import kernels

    if request.param == "aten":
        monkeypatch.setattr(kernels, "KERNELS", None)
        return None
    return request.getfixturevalue("kernel_calls")


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> KernelCalls:
    """Counts the calls of rnnclf's C gate kernels (skipped where they were not built)."""
    from rnnclf.accel import kernels

    if kernels.KERNELS is None:
        pytest.skip("rnnclf/accel/_kernels.c is not built here "
                    "(pip install -e . with a C compiler)")
    counter = KernelCalls(kernels.KERNELS)
    monkeypatch.setattr(kernels, "KERNELS", counter)
    return counter


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small AG News folder (robustness_support.write_dataset: 200 train / 40 test rows), with
    the cache and the working directory inside tmp_path."""
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return write_dataset(tmp_path / "data")
