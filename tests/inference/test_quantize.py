"""int8 inference (`--quantize int8`): agreement with fp32, padding invariance, int8 files
(checkpoint and ONNX), the CLI flags and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from agnews_support import make_keyword_agnews
from export_support import LABELS, TEXTS, inputs_from_metadata, make_checkpoint
from tiny_support import tiny_config
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.errors import RnnclfError
from rnnclf.inference.evaluate import evaluate_checkpoint
from rnnclf.inference.export import export_checkpoint
from rnnclf.inference.predictor import Predictor
from rnnclf.inference.quantize import check_quantization, quantize_model
from rnnclf.models.ensemble import EnsembleClassifier
from rnnclf.models.int8 import Int8NgramBag, dequantize_rows, quantize_rows
from rnnclf.runs.checkpoint import load_checkpoint, load_model, save_checkpoint
from rnnclf.training.trainer import fit

NGRAMS = ("model.ngram_order=2", "model.ngram_buckets=1000", "model.ngram_dim=6")


def probabilities(predictor: Predictor, texts: list[str]) -> torch.Tensor:
    """(texts, classes) in label order."""
    return torch.tensor([[dict(zip(p.labels, p.probabilities))[name] for name in LABELS]
                         for p in predictor.predict(texts, top_k=len(LABELS))])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny model trained 3 epochs on keyword texts (with n-grams); its best.pt and data."""
    folder = tmp_path_factory.mktemp("quantize")
    data = make_keyword_agnews(folder / "data", rows=400)
    config = tiny_config(data, folder / "runs")
    config.train.epochs = 3
    config.model.ngram_buckets = 2000
    config.model.ngram_dim = 8
    fit(config, log=lambda *_: None)
    return folder / "runs" / "tiny" / "best.pt", data


def test_quantize_rows_is_symmetric_per_row_and_keeps_zero_rows() -> None:
    weight = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [1e-3, 2e-3, -4e-3]])
    values, scale = quantize_rows(weight)
    assert values.dtype == torch.int8 and scale.shape == (3,)
    assert values.abs().amax(dim=1).tolist() == [0, 127, 127]
    restored = dequantize_rows(values, scale)
    assert restored[0].eq(0).all()  # padding rows stay exactly zero
    assert ((restored - weight).abs() <= scale.unsqueeze(1) / 2 + 1e-9).all()
    # Rounding the rounded weights again changes nothing (an int8 checkpoint re-quantized).
    assert torch.equal(quantize_rows(restored)[0], values)


def test_int8_agrees_with_fp32_on_a_trained_model(trained: tuple[Path, Path]) -> None:
    checkpoint, _ = trained
    texts = [line.split('","')[1] + " " + line.split('","')[2].rstrip('"')
             for line in (trained[1] / "test.csv").read_text().splitlines()]
    fp32 = probabilities(Predictor(checkpoint, "cpu"), texts)
    int8_predictor = Predictor(checkpoint, "cpu", quantize="int8")
    assert int8_predictor.quantization == "int8"
    assert isinstance(int8_predictor.model.ngram_bag, Int8NgramBag)
    int8 = probabilities(int8_predictor, texts)
    same = (fp32.argmax(1) == int8.argmax(1)).double().mean().item()
    assert same >= 0.9, same
    assert (fp32 - int8).abs().max() < 0.1
    assert not torch.equal(fp32, int8)  # the weights did change


def test_eval_int8_writes_its_own_report(trained: tuple[Path, Path]) -> None:
    checkpoint, _ = trained
    fp32 = evaluate_checkpoint(checkpoint, device_name="cpu")
    int8 = evaluate_checkpoint(checkpoint, device_name="cpu", quantize="int8")
    assert "quantization" not in fp32 and int8["quantization"] == "int8"
    assert abs(fp32["accuracy"] - int8["accuracy"]) <= 0.1
    written = json.loads((checkpoint.parent / "eval_int8.json").read_text())
    assert written["accuracy"] == int8["accuracy"]
    assert json.loads((checkpoint.parent / "eval.json").read_text())["accuracy"] \
        == fp32["accuracy"]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("ngrams", [(), NGRAMS])
def test_int8_keeps_padding_invariance(tmp_path: Path, cell: str, bidirectional: bool,
                                       ngrams: tuple[str, ...]) -> None:
    """A text's probabilities do not depend on what it is batched with (padding)."""
    pooling = {"rnn": "last", "lstm": "max", "gru": "mean"}[cell]
    checkpoint = make_checkpoint(tmp_path, cell, bidirectional, pooling,
                                 num_layers=2 if bidirectional else 1, overrides=ngrams)
    predictor = Predictor(checkpoint, "cpu", quantize="int8")
    together = probabilities(predictor, TEXTS)
    alone = torch.cat([probabilities(predictor, [text]) for text in TEXTS])
    assert (together - alone).abs().max() < 1e-5
    fp32 = probabilities(Predictor(checkpoint, "cpu"), TEXTS)
    assert (fp32 - together).abs().max() < 0.05


def test_int8_reference_path_matches_the_backend(tmp_path: Path) -> None:
    """The int8 model gives the same numbers with or without the CPU backend."""
    checkpoint = make_checkpoint(tmp_path, "gru", True, "max", overrides=NGRAMS)
    info = json.loads(export_checkpoint(checkpoint, "torchscript")[1].read_text())
    tokens, lengths = inputs_from_metadata(info, TEXTS)
    fast = quantize_model(load_model(checkpoint, "cpu").model)
    reference = quantize_model(load_model(checkpoint, "cpu", reference_path=True).model)
    with torch.inference_mode():
        assert (fast(tokens, lengths) - reference(tokens, lengths)).abs().max() < 1e-4


def test_ensembles_quantize_member_by_member(tmp_path: Path) -> None:
    members = [load_model(make_checkpoint(tmp_path, "lstm", True, "max", overrides=NGRAMS),
                          "cpu").model for _ in range(2)]
    ensemble = quantize_model(EnsembleClassifier(members))
    assert all(isinstance(member.ngram_bag, Int8NgramBag) for member in ensemble.members)


def test_int8_checkpoint_of_an_ensemble(tmp_path: Path) -> None:
    """An ensemble's best.pt (members.K.* weights) exports to int8 and predicts as int8."""
    single = load_checkpoint(make_checkpoint(tmp_path, "gru", True, "max", overrides=NGRAMS))
    config = single["config"]
    config["train"]["ensemble"] = 2
    state = {f"members.{index}.{key}": value * (1 + index)
             for index in range(2) for key, value in single["model_state"].items()}
    ensemble_path = tmp_path / "ensemble.pt"
    save_checkpoint(ensemble_path, {**single, "config": config, "model_state": state})
    int8_path, _ = export_checkpoint(ensemble_path, "checkpoint", quantize="int8")
    from_file = Predictor(int8_path, "cpu")
    assert isinstance(from_file.model, EnsembleClassifier)
    assert all(isinstance(member.ngram_bag, Int8NgramBag) for member in from_file.model.members)
    fp32 = probabilities(Predictor(ensemble_path, "cpu"), TEXTS)
    assert (probabilities(from_file, TEXTS) - fp32).abs().max() < 0.05


def test_int8_checkpoint_round_trip(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path, "gru", True, "max", overrides=NGRAMS)
    path, info_path = export_checkpoint(checkpoint, "checkpoint", quantize="int8")
    assert path == tmp_path / "best.int8.pt"
    payload = load_checkpoint(path)
    assert "model_state" not in payload  # an rnnclf without int8 refuses it, not misreads it
    table = payload["model_state_int8"]["int8"]["ngram_bag.table.weight"]
    assert table.dtype == torch.int8
    assert json.loads(info_path.read_text())["quantization"]["scheme"] == "int8"
    from_file = Predictor(path, "cpu")  # int8 without being asked
    assert from_file.quantization == "int8"
    on_load = Predictor(checkpoint, "cpu", quantize="int8")
    assert torch.equal(probabilities(from_file, TEXTS), probabilities(on_load, TEXTS))
    with pytest.raises(RnnclfError, match="int8 already"):
        export_checkpoint(path, "checkpoint", tmp_path / "again.pt", quantize="int8")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_int8_onnx_export_is_checked_against_fp32(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    checkpoint = make_checkpoint(tmp_path, "gru", True, "max", overrides=NGRAMS)
    expected = probabilities(Predictor(checkpoint, "cpu"), TEXTS)
    path, info_path = export_checkpoint(checkpoint, "onnx", quantize="int8")
    assert path.name == "best.int8.onnx"
    info = json.loads(info_path.read_text())
    check = info["quantization"]["check_against_fp32_export"]
    assert check["rows"] == 256 and check["same_label"] >= 0.9
    tokens, lengths = inputs_from_metadata(info, TEXTS)
    session = ort.InferenceSession(str(path))
    int8 = torch.from_numpy(session.run(["probabilities"], {"tokens": tokens.numpy(),
                                                            "lengths": lengths.numpy()})[0])
    assert (int8.argmax(1) == expected.argmax(1)).all()
    assert (int8 - expected).abs().max() < 0.1
    assert "MatMulInteger" in path.read_bytes().decode("latin-1")  # int8 arithmetic inside


def test_refusals_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="CPU only; use --device cpu"):
        check_quantization("int8", torch.device("cuda"), "fp32")
    with pytest.raises(RnnclfError, match="drop --precision bf16"):
        check_quantization("int8", torch.device("cpu"), "bf16")
    with pytest.raises(RnnclfError, match="'int4' is not allowed; use int8"):
        check_quantization("int4", torch.device("cpu"), "fp32")
    checkpoint = make_checkpoint(tmp_path, "gru", True, "max")
    with pytest.raises(RnnclfError, match="drop --precision bf16"):
        Predictor(checkpoint, "cpu", "bf16", quantize="int8")
    int8_path, _ = export_checkpoint(checkpoint, "checkpoint", quantize="int8")
    with pytest.raises(RnnclfError, match="drop --precision bf16"):
        Predictor(int8_path, "cpu", "bf16")  # an int8 checkpoint is int8 unasked
    with pytest.raises(RnnclfError, match="runs on the CPU only"):
        load_model(int8_path, "meta")
    with pytest.raises(RnnclfError, match="not TorchScript"):
        export_checkpoint(checkpoint, "torchscript", quantize="int8")
    with pytest.raises(RnnclfError, match="add --quantize int8"):
        export_checkpoint(checkpoint, "checkpoint")


def test_cli_quantize_flags(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = trained
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "-c", str(checkpoint), "--quantize", "int8",
                                 "--json", "football coach goal"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["label"] in LABELS
    result = runner.invoke(app, ["eval", str(checkpoint), "--quantize", "int8", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["quantization"] == "int8"
    out = tmp_path / "small.pt"
    result = runner.invoke(app, ["export", str(checkpoint), "--format", "checkpoint",
                                 "--quantize", "int8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size < checkpoint.stat().st_size / 2
    result = runner.invoke(app, ["predict", "-c", str(out), "football coach goal"])
    assert result.exit_code == 0, result.output
    rows = tmp_path / "rows.csv"
    rows.write_text("text\nfootball coach goal\nshares profit bank\n", encoding="utf-8")
    result = runner.invoke(app, ["predict", "-c", str(checkpoint), "--input", str(rows),
                                 "--output", str(tmp_path / "out.csv"), "--quantize", "int8",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.csv").read_text().startswith("text,predicted_label,probability")
    for command in (["predict", "-c", str(checkpoint), "x"], ["eval", str(checkpoint)],
                    ["export", str(checkpoint)]):
        result = runner.invoke(app, [*command, "--quantize", "int4"])
        assert result.exit_code != 0 and "--quantize 'int4' is not allowed; use int8" in str(
            result.exception)
    result = runner.invoke(app, ["predict", "-c", str(checkpoint), "--quantize", "int8",
                                 "--precision", "bf16", "x"])
    assert result.exit_code != 0 and "drop --precision bf16" in str(result.exception)
