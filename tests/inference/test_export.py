"""Exported models (ONNX in onnxruntime, TorchScript in torch) give rnnclf's probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import load_config
from rnnclf.data.dataset import encode_texts, text_of
from rnnclf.data.text import Vocab
from rnnclf.inference.export import export_checkpoint
from rnnclf.inference.predictor import Predictor
from rnnclf.models.build import build_model
from rnnclf.runs.checkpoint import save_checkpoint

TEXTS = ["Stocks rally as oil prices fall", "The team won the final",
         "New chip doubles battery life of phones and laptops, the company said on Monday",
         "rain", "Talks stall over border, ministers say"]
LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def make_checkpoint(folder: Path, cell: str, bidirectional: bool, pooling: str,
                    num_layers: int = 1, overrides: tuple[str, ...] = ()) -> Path:
    """An untrained tiny model saved the way `rnnclf train` saves one."""
    torch.manual_seed(0)
    config = load_config(None, [f"model.cell={cell}", f"model.bidirectional={bidirectional}",
                                f"model.pooling={pooling}", f"model.num_layers={num_layers}",
                                "model.embedding_dim=8", "model.pretrained_embeddings=",
                                "model.hidden_size=8",
                                "data.max_length=12", *overrides])
    tokens = [token for text in TEXTS for token in text_of(text, True)]
    vocab = Vocab.build([tokens[::2]])  # some words stay unknown
    model = build_model(config.model, len(vocab), len(LABELS))
    with torch.no_grad():  # large weights make the probabilities far from uniform
        for parameter in model.parameters():
            parameter.mul_(3)
    path = folder / "best.pt"
    save_checkpoint(path, {"config": config.to_dict(), "vocab": vocab.itos,
                           "label_names": LABELS, "model_state": model.state_dict()})
    return path


def inputs_from_metadata(info: dict, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What another program does with the JSON: tokenize, look up ids, pad (unequal lengths)."""
    vocab = Vocab(info["vocab"])
    split = encode_texts([text_of(text, info["text"]["clean"]) for text in texts],
                         [0] * len(texts), vocab)
    lengths = split.lengths  # texts longer than max_length: the exported model truncates
    tokens = torch.full((len(texts), int(lengths.max())), info["pad_index"], dtype=torch.int64)
    for row, (offset, length) in enumerate(zip(split.offsets, lengths)):
        tokens[row, :length] = split.tokens[offset:offset + length].long()
    return tokens, lengths


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
    assert result.exit_code != 0 and "use onnx or torchscript" in str(result.exception)
