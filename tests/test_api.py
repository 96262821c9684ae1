"""The Python API (rnnclf/api.py), used as a notebook would, and `import rnnclf` leaving the
process as it found it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from robustness_support import REPO, write_dataset


def test_notebook_session_end_to_end(tmp_path: Path) -> None:
    """train -> evaluate -> predict on a small generated AG News, checking what comes back."""
    from rnnclf import (
        Config,
        Prediction,
        Predictor,
        RnnclfError,
        TrainResult,
        evaluate,
        load_config,
        predict,
        train,
    )

    data = write_dataset(tmp_path / "data", train_rows=160, test_rows=24)
    config = load_config("agnews_gru", {
        "data.dir": data, "data.min_freq": 1, "model.pretrained_embeddings": "",
        "model": {"embedding_dim": 8, "hidden_size": 8},
        "train": {"epochs": 2, "batch_size": 16, "num_threads": 1, "progress": False,
                  "device": "cpu", "early_stopping_patience": 0},
    })
    assert isinstance(config, Config)
    assert (config.model.cell, config.train.name, config.train.epochs) == ("gru", "agnews_gru", 2)

    lines: list[str] = []
    result = train(config, log=lines.append)
    assert isinstance(result, TrainResult)
    assert result.run_dir == (tmp_path / "runs" / "agnews_gru").resolve()
    assert result.best_checkpoint == result.run_dir / "best.pt"
    assert result.best_checkpoint.is_file()
    saved = json.loads((result.run_dir / "summary.json").read_text(encoding="utf-8"))
    assert result.summary == saved
    assert 0.0 <= result.best_val_acc <= 1.0 and result.best_val_acc == saved["best_val_acc"]
    assert [record["epoch"] for record in result.epochs] == [1, 2]
    assert any("best val accuracy" in line for line in lines)

    metrics = evaluate(result)
    assert (result.run_dir / "eval.json").is_file()
    matrix = metrics["confusion_matrix"]
    assert metrics["num_examples"] == sum(map(sum, matrix)) == 24
    assert metrics["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(4)) / 24)
    assert set(metrics["per_class"]) == set(metrics["labels"]) and len(metrics["labels"]) == 4
    val = evaluate(str(result.best_checkpoint), split="val", write=False)
    assert val["split"] == "val" and val["accuracy"] == pytest.approx(result.best_val_acc)

    predictor = Predictor(result.best_checkpoint, "cpu")
    texts = ["Coach praises striker after league goal", "Chip maker ships new server software"]
    predictions = predictor.predict(texts, top_k=4)
    assert [type(p) for p in predictions] == [Prediction, Prediction]
    assert [p.text for p in predictions] == texts
    for prediction in predictions:
        assert sorted(prediction.labels) == sorted(metrics["labels"])
        assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-5)
        assert prediction.probabilities == sorted(prediction.probabilities, reverse=True)
    (single,) = predict(result, texts[0], device="cpu")
    assert single.labels == predictions[0].labels[:1]
    assert single.probabilities[0] == pytest.approx(predictions[0].probabilities[0])

    resumed = train(resume=result.run_dir, overrides=["train.epochs=3"], log=None)
    assert [record["epoch"] for record in resumed.epochs] == [1, 2, 3]

    with pytest.raises(RnnclfError, match="did you mean 'agnews_gru'"):
        load_config("agnews_gr")
    with pytest.raises(RnnclfError, match="split 'train' is not allowed"):
        evaluate(result, split="train")
    with pytest.raises(RnnclfError, match="train.seed cannot change"):
        train(resume=result.run_dir, overrides={"train.seed": 3})
    with pytest.raises(RnnclfError, match="model.cell"):
        load_config(None, {"model.cell": "transformer"})


def test_overrides_take_python_values() -> None:
    from rnnclf import load_config

    config = load_config(None, {"optim.lr": 3e-3, "model.bidirectional": False,
                                "data.dir": Path("/data/x"), "train": {"epochs": 7}})
    assert (config.optim.lr, config.model.bidirectional) == (0.003, False)
    assert (config.data.dir, config.train.epochs, config.train.name) == ("/data/x", 7, "default")
    assert load_config(None, "train.epochs=5").train.epochs == 5
    assert load_config(REPO / "configs" / "smoke.yaml").train.name == "smoke"


# What a process looks like from the outside: each must be the same before and after the import.
SNAPSHOT = """
import logging, signal, sys, warnings
import torch

def snapshot():
    root = logging.getLogger()
    return repr({
        "warnings": list(warnings.filters), "showwarning": warnings.showwarning,
        "logging": (root.level, list(root.handlers), sorted(logging.Logger.manager.loggerDict),
                    logging.getLoggerClass(), logging.root.manager.disable),
        "signals": [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)],
        "excepthook": sys.excepthook,
        "torch": (torch.get_num_threads(), torch.get_num_interop_threads(),
                  torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
                  torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark,
                  torch.is_grad_enabled(), torch.random.get_rng_state().sum().item()),
    })
"""


@pytest.mark.parametrize("imports", [
    "import rnnclf",
    "from rnnclf import load_config, train, evaluate, predict, Predictor, TrainResult",
    "import rnnclf.cli.app",
])
def test_importing_rnnclf_changes_no_global_state(imports: str) -> None:
    script = SNAPSHOT + textwrap.dedent(f"""
        before = snapshot()
        {imports}
        after = snapshot()
        assert before == after, (before, after)
        print("same")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-3000:]


def test_import_rnnclf_imports_no_torch() -> None:
    script = "import sys, rnnclf; print(rnnclf.__version__, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    import rnnclf

    assert done.stdout.split() == [rnnclf.__version__, "False"], done.stderr
