"""Seed ensembles (`train.ensemble`): members are ordinary runs, best.pt averages them, and an
interrupted ensemble resumes where it stopped."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from robustness_support import run_cli, tiny_overrides, write_dataset

from rnnclf.config import load_config
from rnnclf.errors import Interrupted
from rnnclf.inference.evaluate import evaluate_checkpoint
from rnnclf.inference.export import export_checkpoint
from rnnclf.inference.predictor import Predictor
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.ensemble import EnsembleClassifier
from rnnclf.runs.checkpoint import load_checkpoint, load_model, save_checkpoint
from rnnclf.training import epoch as epoch_module
from rnnclf.training.ensemble import fit_ensemble, load_run_config
from rnnclf.training.trainer import fit

STEPS_PER_EPOCH = 23  # 180 training rows in batches of 8 (tiny_overrides)


def quiet(*_: Any) -> None:
    pass


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")


def ensemble_config(data_dir: Path, runs: Path, name: str = "ens", size: int = 3,
                    epochs: int = 2):
    return load_config(None, tiny_overrides(data_dir, runs, name=name, epochs=epochs,
                                            **{"train.ensemble": size, "train.seed": 5}))


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def member_state(state: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    prefix = f"members.{index}."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def test_ensemble_output_is_the_log_of_the_members_mean_probability() -> None:
    torch.manual_seed(0)
    members = [RNNClassifier(30, 4, embedding_dim=6, hidden_size=5, ngram_order=2,
                             ngram_buckets=50, ngram_dim=3) for _ in range(3)]
    ensemble = EnsembleClassifier(members).eval()
    tokens = torch.randint(1, 30, (4, 7))
    lengths = torch.tensor([7, 5, 3, 1])
    with torch.inference_mode():
        output = ensemble(tokens, lengths)
        mean = torch.stack([member(tokens, lengths).softmax(1) for member in members]).mean(0)
    assert torch.allclose(output.exp(), mean, atol=1e-6)
    assert torch.allclose(output.softmax(1), mean, atol=1e-6)  # reads like logits
    with torch.inference_mode():
        alone = EnsembleClassifier(members[:1]).eval()(tokens, lengths)
        assert torch.allclose(alone, members[0](tokens, lengths).log_softmax(1), atol=1e-6)


def test_ensemble_trains_seeded_members_and_saves_one_averaged_checkpoint(
        data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    summary = fit_ensemble(ensemble_config(data_dir, runs), log=quiet)
    run_dir = runs / "ens"

    # Member k is the run a single model with seed 5 + 1000 (k - 1) would be, in member_k/.
    seeds = [load_checkpoint(run_dir / f"member_{k}" / "best.pt")["config"]["train"]["seed"]
             for k in (1, 2, 3)]
    assert seeds == [5, 1005, 2005]
    single = load_config(None, tiny_overrides(data_dir, runs, name="single", epochs=2,
                                              **{"train.seed": 1005}))
    fit(single, log=quiet)
    assert same_state(load_checkpoint(runs / "single" / "best.pt")["model_state"],
                      load_checkpoint(run_dir / "member_2" / "best.pt")["model_state"])

    payload = load_checkpoint(run_dir / "best.pt")
    assert payload["config"]["train"]["ensemble"] == 3
    assert "optimizer_state" not in payload
    for index in range(3):
        own = load_checkpoint(run_dir / f"member_{index + 1}" / "best.pt")["model_state"]
        assert same_state(member_state(payload["model_state"], index), own)
    assert not list(run_dir.glob("member_*/last.pt"))  # removed once the ensemble is whole
    loaded = load_model(run_dir / "best.pt")
    assert isinstance(loaded.model, EnsembleClassifier) and len(loaded.model.members) == 3

    # The summary's val accuracy is the ensemble's own, as `rnnclf eval --split val` sees it.
    report = evaluate_checkpoint(run_dir / "best.pt", split="val", write=False)
    assert summary["best_val_acc"] == pytest.approx(report["accuracy"])
    assert json.loads((run_dir / "summary.json").read_text())["ensemble"] == 3
    assert [member["seed"] for member in summary["members"]] == [5, 1005, 2005]


def test_ensemble_through_the_cli_eval_predict_and_export(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    overrides = tiny_overrides(data_dir, runs, name="cli_ens", epochs=1,
                               **{"train.ensemble": 2})
    result = run_cli(["train", *overrides], capsys)
    assert result.code == 0, result.stderr
    assert "ensemble of 2: val accuracy" in result.stdout
    checkpoint = runs / "cli_ens" / "best.pt"

    result = run_cli(["eval", checkpoint, "--json"], capsys)
    assert result.code == 0, result.stderr
    assert 0.0 <= json.loads(result.stdout)["accuracy"] <= 1.0

    result = run_cli(["predict", "--checkpoint", checkpoint, "--json", "--top-k", "4",
                      "stocks fall"], capsys)
    assert result.code == 0, result.stderr
    top_k = json.loads(result.stdout.splitlines()[0])["top_k"]
    assert math.isclose(sum(entry["probability"] for entry in top_k), 1.0, abs_tol=1e-5)

    rows = tmp_path / "rows.csv"
    rows.write_text('text\n"stocks fall as oil rises"\n"the team won"\n', encoding="utf-8")
    result = run_cli(["predict", "--checkpoint", checkpoint, "--input", rows, "--output", "-"],
                     capsys)
    assert result.code == 0, result.stderr
    predicted = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["text"] for row in predicted] == ["stocks fall as oil rises", "the team won"]
    assert all(0.25 <= row["probability"] <= 1.0 for row in predicted)  # the top of 4 classes

    texts = ["stocks fall as oil rises", "the team won", "x"]
    predictions = Predictor(checkpoint, "cpu").predict(texts, top_k=4)
    labels = predictions[0].labels
    expected = torch.tensor([[dict(zip(p.labels, p.probabilities))[name] for name in labels]
                             for p in predictions])
    script_path, info_path = export_checkpoint(checkpoint, "torchscript", tmp_path / "m.pt")
    info = json.loads(info_path.read_text())
    assert info["ensemble"] == 2
    from export_support import inputs_from_metadata

    tokens, lengths = inputs_from_metadata(info, texts)
    _, scripted = torch.jit.load(str(script_path))(tokens, lengths)
    order = [info["label_names"].index(name) for name in labels]
    assert (scripted[:, order] - expected).abs().max() < 1e-4


def test_interrupted_ensemble_resumes_and_ends_like_an_uninterrupted_one(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    fit_ensemble(ensemble_config(data_dir, runs, name="straight", size=2), log=quiet)

    # SIGINT in the middle of member 2's first epoch (member 1 has 2 epochs of steps).
    original, calls = epoch_module._forward_loss, {"step": 0}

    def forward(*args: Any, **kwargs: Any) -> Any:
        calls["step"] += 1
        if calls["step"] == 2 * STEPS_PER_EPOCH + 7:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "_forward_loss", forward)
    run_dir = runs / "stopped"
    with pytest.raises(Interrupted) as stopped:
        fit_ensemble(ensemble_config(data_dir, runs, name="stopped", size=2), log=quiet)
    monkeypatch.undo()
    assert f"--resume {run_dir}" in str(stopped.value)  # the ensemble, not the member
    assert "member_2" not in str(stopped.value)
    assert not (run_dir / "best.pt").exists()
    first_member = (run_dir / "member_1" / "best.pt").stat().st_mtime_ns

    config = load_run_config(run_dir, ["train.progress=false"])
    assert config.train.ensemble == 2
    lines: list[str] = []
    fit_ensemble(config, resume_dir=run_dir, log=lines.append)
    assert any("member 1/2: already trained" in line for line in lines)
    assert (run_dir / "member_1" / "best.pt").stat().st_mtime_ns == first_member
    assert same_state(load_checkpoint(run_dir / "best.pt")["model_state"],
                      load_checkpoint(runs / "straight" / "best.pt")["model_state"])


def test_ensemble_mistakes_are_one_line(data_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    overrides = tiny_overrides(data_dir, runs, name="e", epochs=1, **{"train.ensemble": 2})
    result = run_cli(["train", *overrides, "--nproc", "2"], capsys)
    result.assert_one_error_line("train.ensemble", "--nproc")
    for bad in ("0", "17", "two"):
        result = run_cli(["train", *overrides[:-1], f"train.ensemble={bad}"], capsys)
        result.assert_one_error_line("train.ensemble")
    assert run_cli(["train", *overrides], capsys).code == 0
    run_cli(["train", *overrides], capsys).assert_one_error_line("already holds a run",
                                                                 "--overwrite")
    run_cli(["train", "--resume", runs / "e", "model.cell=lstm"],
            capsys).assert_one_error_line("model.cell cannot change")
    result = run_cli(["train", *overrides, "--overwrite"], capsys)
    assert result.code == 0, result.stderr


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_exported_ensemble_in_onnxruntime_gives_rnnclf_probabilities(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from export_support import LABELS, TEXTS, inputs_from_metadata, make_checkpoint

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    members = [load_checkpoint(make_checkpoint(tmp_path / folder, "gru", True, "max",
                                               overrides=("model.ngram_order=2",
                                                          "model.ngram_buckets=100")))
               for folder in ("a", "b")]
    # Two different untrained members: the second is the first with its weights perturbed.
    second = {key: value + 0.5 * torch.randn_like(value) if value.is_floating_point() else value
              for key, value in members[1]["model_state"].items()}
    state = {**{f"members.0.{k}": v for k, v in members[0]["model_state"].items()},
             **{f"members.1.{k}": v for k, v in second.items()}}
    config = members[0]["config"]
    config["train"]["ensemble"] = 2
    checkpoint = tmp_path / "ensemble.pt"
    save_checkpoint(checkpoint, {"config": config, "vocab": members[0]["vocab"],
                                 "label_names": LABELS, "model_state": state})
    predictions = Predictor(checkpoint, "cpu").predict(TEXTS, top_k=len(LABELS))
    expected = torch.tensor([[dict(zip(p.labels, p.probabilities))[name] for name in LABELS]
                             for p in predictions])
    onnx_path, info_path = export_checkpoint(checkpoint, "onnx")
    tokens, lengths = inputs_from_metadata(json.loads(info_path.read_text()), TEXTS)
    session = ort.InferenceSession(str(onnx_path))
    probabilities = session.run(["probabilities"], {"tokens": tokens.numpy(),
                                                    "lengths": lengths.numpy()})[0]
    assert (torch.from_numpy(probabilities) - expected).abs().max() < 1e-4
