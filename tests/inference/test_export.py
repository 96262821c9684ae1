"""Exported models (ONNX in onnxruntime, TorchScript in torch) give rnnclf's probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from export_support import LABELS, TEXTS, inputs_from_metadata, make_checkpoint
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.inference.export import export_checkpoint
from rnnclf.inference.predictor import Predictor


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("ngram_order", [0, 3])
def test_exported_models_match_rnnclf(tmp_path: Path, cell: str, bidirectional: bool,
                                      ngram_order: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pooling = {"rnn": "last", "lstm": "max", "gru": "mean"}[cell]
    checkpoint = make_checkpoint(tmp_path, cell, bidirectional, pooling,
                                 num_layers=2 if bidirectional else 1,
                                 overrides=(f"model.ngram_order={ngram_order}",
                                            "model.ngram_buckets=1000", "model.ngram_dim=6"))
    predictions = Predictor(checkpoint, "cpu").predict(TEXTS, top_k=len(LABELS))
    expected = torch.tensor([[dict(zip(p.labels, p.probabilities))[name] for name in LABELS]
                             for p in predictions])  # (texts, classes) in label order

    onnx_path, info_path = export_checkpoint(checkpoint, "onnx")
    info = json.loads(info_path.read_text())
    assert info["label_names"] == LABELS and info["text"]["tokenizer"] == "basic_english"
    assert info["text"]["max_length"] == 12
    tokens, lengths = inputs_from_metadata(info, TEXTS)
    session = ort.InferenceSession(str(onnx_path))
    onnx_probabilities = session.run(["probabilities"], {"tokens": tokens.numpy(),
                                                         "lengths": lengths.numpy()})[0]
    assert (torch.from_numpy(onnx_probabilities) - expected).abs().max() < 1e-4
    # A different batch size and width than the export example: the axes are dynamic.
    single = session.run(["probabilities"], {"tokens": tokens[3:4, :1].numpy(),
                                             "lengths": lengths[3:4].numpy()})[0]
    assert (torch.from_numpy(single) - expected[3:4]).abs().max() < 1e-4

    script_path, _ = export_checkpoint(checkpoint, "torchscript", tmp_path / "model.pt")
    scripted = torch.jit.load(str(script_path))
    _, script_probabilities = scripted(tokens, lengths)
    assert (script_probabilities - expected).abs().max() < 1e-4
    assert (tmp_path / "model.pt.json").is_file()


def test_cli_export_and_errors(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path, "gru", True, "max")
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(checkpoint), "--format", "torchscript"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "best.torchscript.pt").is_file()
    assert (tmp_path / "best.torchscript.pt.json").is_file()
    result = runner.invoke(app, ["export", str(checkpoint), "--format", "tflite"])
    assert result.exit_code != 0 and "use onnx, torchscript, checkpoint" in str(result.exception)
