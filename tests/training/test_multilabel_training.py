"""Multi-label end to end on a generated set whose answers are known (label i is on exactly when
its keyword occurs): training recovers the labels, best.pt stores per-label thresholds that
eval, predict (texts and files) and export use; padding invariance, resume, ensembles and a real
2-process DDP run."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from multilabel_support import KEYWORDS, multilabel_config, write_set
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import to_yaml
from rnnclf.config.resume import load_resume_config
from rnnclf.data.dataset import prepare_training_data
from rnnclf.errors import Interrupted
from rnnclf.inference.evaluate import evaluate_checkpoint
from rnnclf.inference.export import export_checkpoint
from rnnclf.inference.files import predict_file
from rnnclf.inference.predictor import Predictor
from rnnclf.inference.scoring import evaluate
from rnnclf.runs.atomic import read_jsonl
from rnnclf.runs.checkpoint import load_checkpoint, load_model, save_checkpoint
from rnnclf.training import epoch as epoch_module
from rnnclf.training.distributed import DistContext, evaluate_sharded
from rnnclf.training.trainer import fit

REPO = Path(__file__).resolve().parents[2]
LABELS = sorted(KEYWORDS)  # alpha, beta, gamma: keywords apple, banana, cherry
TIMING_KEYS = {"seconds", "samples_per_s"}


def quiet(*args: Any, **kwargs: Any) -> None:
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One multi-label run (400 rows, 6 epochs, a few seconds)."""
    root = tmp_path_factory.mktemp("multilabel")
    data = write_set(root / "data")
    config = multilabel_config(data, root / "runs")
    fit(copy.deepcopy(config), log=quiet)
    return {"root": root, "data": data, "config": config, "run": root / "runs" / "multi"}


def test_training_recovers_the_keyword_labels(trained: dict[str, Any]) -> None:
    report = evaluate_checkpoint(trained["run"] / "best.pt", write=False)
    assert report["multi_label"] is True and report["num_examples"] == 150
    assert report["micro_f1"] >= 0.95 and report["macro_f1"] >= 0.95
    assert report["subset_accuracy"] >= 0.9
    assert report["labels"] == LABELS and report["thresholds_tuned"] is True
    assert report["per_label"]["beta"]["support"] > 30
    records = read_jsonl(trained["run"] / "metrics.jsonl")
    last = records[-1]
    assert last["val_acc"] == last["val_micro_f1"]  # accuracy means micro-F1 in multi-label
    assert {"val_macro_f1", "val_subset_accuracy"} <= last.keys()
    assert "val_thresholds" not in last


def test_best_pt_stores_thresholds_tuned_on_validation(trained: dict[str, Any]) -> None:
    payload = load_checkpoint(trained["run"] / "best.pt")
    thresholds = payload["thresholds"]
    assert len(thresholds) == 3 and all(0.05 <= value <= 0.95 for value in thresholds)
    # They are the ones the validation split gives for best.pt's weights.
    loaded = load_model(trained["run"] / "best.pt")
    data = prepare_training_data(loaded.config.data)
    val = evaluate(loaded.model, data.val, 64, loaded.config.data.max_length, torch.device("cpu"))
    assert val["thresholds"] == thresholds
    assert "thresholds" not in load_checkpoint(trained["run"] / "last.pt")


def test_eval_json_and_text(trained: dict[str, Any]) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(trained["run"] / "best.pt"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"micro_f1", "macro_f1", "subset_accuracy", "per_label", "thresholds"} <= report.keys()
    assert set(report["per_label"]["alpha"]) == {"precision", "recall", "f1", "support",
                                                 "threshold"}
    assert (trained["run"] / "eval.json").is_file()
    text = runner.invoke(app, ["eval", str(trained["run"] / "best.pt")]).stdout
    assert "micro-F1" in text and "subset accuracy" in text and "gamma" in text
    assert "confusion" not in text


def test_predict_shows_every_label_above_its_threshold(trained: dict[str, Any]) -> None:
    runner = CliRunner()
    checkpoint = str(trained["run"] / "best.pt")
    texts = ["the banana market apple report", "people said after the long week"]
    result = runner.invoke(app, ["predict", *texts, "-c", checkpoint, "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(lines[0]["labels"]) == ["alpha", "beta"] and lines[1]["labels"] == []
    assert all(probability >= 0.5 for probability in lines[0]["probabilities"])
    text = runner.invoke(app, ["predict", *texts, "-c", checkpoint]).stdout.splitlines()
    assert sorted(text[0].split()[::2]) == ["alpha", "beta"]
    assert text[1] == "(no label above its threshold)"
    top = runner.invoke(app, ["predict", texts[0], "-c", checkpoint, "-k", "3"]).stdout.split()
    assert sorted(top[::2]) == LABELS and top[-1][-1] != "*" and top[1].endswith("*")
    top_json = json.loads(runner.invoke(app, ["predict", texts[1], "-c", checkpoint, "-k", "2",
                                              "--json"]).stdout)
    assert len(top_json["top_k"]) == 2 and not any(row["above_threshold"]
                                                    for row in top_json["top_k"])


def test_predict_decides_with_the_stored_thresholds(trained: dict[str, Any],
                                                    tmp_path: Path) -> None:
    payload = load_checkpoint(trained["run"] / "best.pt")
    payload["thresholds"] = [2.0, 0.0, 0.5]  # alpha never, beta always, gamma as usual
    save_checkpoint(tmp_path / "edited.pt", payload)
    [result] = Predictor(tmp_path / "edited.pt", "cpu").predict(["apple cherry report"])
    assert set(result.chosen or []) == {"beta", "gamma"}
    del payload["thresholds"]  # an older or interrupted checkpoint: 0.5 each
    save_checkpoint(tmp_path / "none.pt", payload)
    [result] = Predictor(tmp_path / "none.pt", "cpu").predict(["apple cherry report"])
    assert set(result.chosen or []) == {"alpha", "gamma"}


def test_file_prediction_lists_the_labels(trained: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("text\nbanana cherry today\nthe plan\n", encoding="utf-8")
    predict_file(trained["run"] / "best.pt", source, tmp_path / "out.csv", progress=False,
                 device_name="cpu")
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[0] == "text,predicted_label,probability"
    assert rows[1].split(",")[1] in ("beta|gamma", "gamma|beta") and rows[2] == "the plan,,"
    predict_file(trained["run"] / "best.pt", source, tmp_path / "out.jsonl", progress=False,
                 device_name="cpu", all_probabilities=True)
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert sorted(first["predicted_label"]) == ["beta", "gamma"]
    assert len(first["probability"]) == 2 and first["probability_alpha"] < 0.5
    parquet = pytest.importorskip("pyarrow.parquet")
    predict_file(trained["run"] / "best.pt", source, tmp_path / "out.parquet", progress=False,
                 device_name="cpu")
    rows = parquet.read_table(tmp_path / "out.parquet").to_pylist()
    assert sorted(rows[0]["predicted_label"]) == ["beta", "gamma"]
    assert rows[1]["predicted_label"] == [] and rows[1]["probability"] == []


def test_padding_invariance(trained: dict[str, Any]) -> None:
    """A text alone and inside a padded batch of longer ones gets the same probabilities."""
    predictor = Predictor(trained["run"] / "best.pt", "cpu")
    texts = ["apple", "banana said the market team city plan after long week story",
             "cherry apple people", "today"]
    together = predictor.predict(texts, top_k=3)
    for text, batched in zip(texts, together):
        [alone] = predictor.predict([text], top_k=3)
        assert alone.labels == batched.labels
        assert alone.probabilities == pytest.approx(batched.probabilities, abs=1e-5)
        assert alone.chosen == batched.chosen


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_metadata_carries_thresholds_and_sigmoid_outputs(trained: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    model_path, info_path = export_checkpoint(trained["run"] / "best.pt", "torchscript",
                                              tmp_path / "model.pt")
    info = json.loads(info_path.read_text())
    assert info["multi_label"] is True
    assert info["thresholds"] == load_checkpoint(trained["run"] / "best.pt")["thresholds"]
    assert "sigmoid" in info["outputs"]["probabilities"]
    texts = ["apple banana", "cherry"]
    predictions = Predictor(trained["run"] / "best.pt", "cpu").predict(texts, top_k=3)
    from export_support import inputs_from_metadata

    _, probabilities = torch.jit.load(str(model_path))(*inputs_from_metadata(info, texts))
    for row, prediction in zip(probabilities, predictions):
        expected = dict(zip(prediction.labels, prediction.probabilities))
        assert row.tolist() == pytest.approx([expected[name] for name in LABELS], abs=1e-5)


def test_sharded_validation_equals_single_process(trained: dict[str, Any]) -> None:
    loaded = load_model(trained["run"] / "best.pt")
    data = prepare_training_data(loaded.config.data)
    one = evaluate(loaded.model, data.val, 7, 64, torch.device("cpu"))
    sharded = evaluate_sharded(loaded.model, data.val, 7, 64, DistContext())
    assert sharded.pop("thresholds") == one.pop("thresholds")
    assert sharded == pytest.approx(one, rel=1e-6)


def test_interrupted_and_resumed_run_matches_the_uninterrupted_one(
        trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    config = copy.deepcopy(trained["config"])
    config.train.name = "stopped"
    run_dir = Path(config.train.runs_dir) / "stopped"
    original, calls = epoch_module._forward_loss, {"step": 0}

    def forward(*args: Any, **kwargs: Any) -> Any:
        calls["step"] += 1
        if calls["step"] == 45:  # in epoch 3 (20 steps per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "_forward_loss", forward)
    with pytest.raises(Interrupted):
        fit(config, log=quiet)
    monkeypatch.undo()
    fit(load_resume_config(run_dir, []), resume_dir=run_dir, log=quiet)

    def comparable(run: Path) -> list[dict[str, Any]]:
        return [{key: value for key, value in record.items() if key not in TIMING_KEYS}
                for record in read_jsonl(run / "metrics.jsonl")]

    assert comparable(run_dir) == comparable(trained["run"])
    resumed, straight = load_checkpoint(run_dir / "best.pt"), load_checkpoint(
        trained["run"] / "best.pt")
    assert resumed["thresholds"] == straight["thresholds"]
    for key, value in straight["model_state"].items():
        assert torch.equal(resumed["model_state"][key], value), key


def test_ensemble_averages_sigmoids_and_tunes_its_own_thresholds(
        trained: dict[str, Any]) -> None:
    from rnnclf.training.ensemble import fit_ensemble

    config = copy.deepcopy(trained["config"])
    config.train.name, config.train.ensemble, config.train.epochs = "ensemble", 2, 4
    summary = fit_ensemble(config, log=quiet)
    run = Path(summary["run_dir"])
    loaded = load_model(run / "best.pt")
    assert loaded.model.multi_label and len(loaded.model.members) == 2
    payload = load_checkpoint(run / "best.pt")
    data = prepare_training_data(loaded.config.data)
    val = evaluate(loaded.model, data.val, 64, loaded.config.data.max_length,
                   torch.device("cpu"))
    assert payload["thresholds"] == val["thresholds"]
    assert summary["best_val_acc"] == pytest.approx(val["micro_f1"])
    report = evaluate_checkpoint(run / "best.pt", write=False)
    assert report["micro_f1"] >= 0.9


def test_two_process_ddp_run(trained: dict[str, Any], tmp_path: Path) -> None:
    """torchrun with 2 gloo processes: sharded validation sums equal one process's figures."""
    config = copy.deepcopy(trained["config"])
    config.train.name, config.train.epochs, config.train.device = "ddp", 3, "cpu"
    config.train.runs_dir = str(tmp_path / "runs")
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(to_yaml(config), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "rnnclf", "train", "--nproc", "2",
                           str(config_path)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "runs" / "ddp"
    last = read_jsonl(run / "metrics.jsonl")[-1]
    loaded = load_model(run / "last.pt")
    data = prepare_training_data(loaded.config.data)
    single = evaluate(loaded.model, data.val, config.train.eval_batch_size,
                      loaded.config.data.max_length, torch.device("cpu"))
    assert last["val_micro_f1"] == pytest.approx(single["micro_f1"], abs=1e-12)
    assert last["val_loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert len(load_checkpoint(run / "best.pt")["thresholds"]) == 3


def test_shipped_multilabel_example_trains(tmp_path: Path) -> None:
    import shutil

    from rnnclf.config import load_config

    shutil.copytree(REPO / "examples", tmp_path / "examples")
    config = load_config(REPO / "configs" / "example_multilabel.yaml",
                         ["train.epochs=1", "train.progress=false", "train.num_threads=1"])
    summary = fit(config, log=quiet)
    payload = load_checkpoint(Path(summary["run_dir"]) / "best.pt")
    assert payload["label_names"] == ["price", "quality", "service", "shipping"]
    assert len(payload["thresholds"]) == 4
    assert summary["train_rows"] + summary["val_rows"] == 600
