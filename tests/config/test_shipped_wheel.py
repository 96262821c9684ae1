"""The built wheel, installed into a fresh venv, ships the configs: `rnnclf config list` and
`rnnclf train agnews_lstm` work from an empty folder, with no checkout in sight.

Offline and quick: the wheel is built with this interpreter's setuptools (no build isolation, so
nothing is downloaded), installed without dependencies, and the fresh venv finds torch and the
other dependencies through a .pth file naming this interpreter's site-packages folders (plain
paths: the .pth files in them, such as an editable rnnclf's, are not run there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import yaml
from robustness_support import write_dataset

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("setuptools", minversion="77", reason="building the wheel needs setuptools "
                    ">= 77 (the `test` extra installs it)")


def build_wheel(out: Path) -> Path:
    """The wheel of a clean copy of the source (the checkout keeps no build/ or egg-info)."""
    source = out / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.pyc")
    for folder in ("rnnclf", "configs"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(out / "dist"), str(source)],
                   check=True, capture_output=True, timeout=600, cwd=out)
    (wheel,) = (out / "dist").glob("rnnclf-*.whl")
    return wheel


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A venv with only the wheel installed in it; its bin/ folder."""
    venv.create(folder, with_pip=False)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # Without PYTHONPATH: a checkout on it would make pip think rnnclf is installed already.
    clean_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300, env=clean_env)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = [entry for entry in sys.path
            if entry.endswith(("site-packages", "dist-packages")) and Path(entry).is_dir()]
    Path(purelib, "rnnclf_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    return python.parent


def test_wheel_ships_the_configs_by_name(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "build")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(path.name for path in (REPO / "configs").glob("*.yaml"))
    assert sorted(Path(name).name for name in names
                  if name.startswith("rnnclf/configs/")) == shipped
    assert "rnnclf/inference/serving/static/index.html" in names  # serve's demo page
    if shutil.which("cc") or shutil.which("gcc"):  # the C kernels are built into the wheel
        assert any(name.startswith("rnnclf/accel/_kernels") for name in names), names

    bin_dir = fresh_venv(tmp_path / "venv", wheel)
    empty = tmp_path / "empty"
    empty.mkdir()
    data = write_dataset(tmp_path / "data", train_rows=80, test_rows=16)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update({"RNNCLF_CACHE_DIR": str(tmp_path / "cache"), "RNNCLF_RUNS_DIR": "runs",
                "OMP_NUM_THREADS": "1"})

    def rnnclf(*args: str) -> str:
        done = subprocess.run([str(bin_dir / "rnnclf"), *args], cwd=empty, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run([str(bin_dir / "python"), "-c", "import rnnclf; print(rnnclf.__file__)"],
                           cwd=empty, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout

    listed = rnnclf("config", "list")
    assert "agnews_lstm" in listed and "bidirectional LSTM" in listed, listed
    assert len(listed.splitlines()) == len(shipped)

    rnnclf("train", "agnews_lstm", f"data.dir={data}", "data.min_freq=1", "train.epochs=1",
           "train.batch_size=16", "train.num_threads=1", "train.progress=false",
           "train.device=cpu")
    run_dir = empty / "runs" / "agnews_lstm"
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert (config["model"]["cell"], config["model"]["ngram_order"]) == ("lstm", 0)
    assert (run_dir / "best.pt").is_file()
    assert rnnclf("predict", "-c", str(run_dir / "best.pt"), "football coach season").strip()
