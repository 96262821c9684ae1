"""`rnnclf predict --input/--output` and `rnnclf config show/validate`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import load_config
from rnnclf.data.text import Vocab
from rnnclf.errors import RnnclfError
from rnnclf.inference.files import predict_file
from rnnclf.inference.predictor import Predictor
from rnnclf.models.build import build_model
from rnnclf.runs.checkpoint import save_checkpoint

LABELS = ["neg", "pos"]
TEXTS = ["good great fine", "bad awful", "good", "awful awful bad terrible day"]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = load_config(None, ["model.embedding_dim=8", "model.pretrained_embeddings=",
                                "model.hidden_size=8",
                                "train.eval_batch_size=2"])
    vocab = Vocab.build([text.split() for text in TEXTS])
    model = build_model(config.model, len(vocab), len(LABELS))
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"config": config.to_dict(), "vocab": vocab.itos, "label_names": LABELS,
                           "model_state": model.state_dict()})
    return path


def expected(checkpoint: Path) -> list[tuple[str, float]]:
    return [(p.labels[0], p.probabilities[0])
            for p in Predictor(checkpoint, "cpu").predict(TEXTS)]


def test_csv_in_csv_out_keeps_columns_and_order(tmp_path: Path, checkpoint: Path) -> None:
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "note"])
        writer.writerows([[i, text, f"n{i}"] for i, text in enumerate(TEXTS)])
    stats = predict_file(checkpoint, source, tmp_path / "out.csv", all_probabilities=True,
                         chunk_rows=3, progress=False, device_name="cpu")  # chunks of 3 and 1
    assert stats.rows == 4 and stats.empty == 0
    with (tmp_path / "out.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "text", "note", "predicted_label", "probability",
                             "probability_neg", "probability_pos"]
    assert [row["note"] for row in rows] == ["n0", "n1", "n2", "n3"]
    for row, (label, probability) in zip(rows, expected(checkpoint)):
        assert row["predicted_label"] == label
        assert abs(float(row["probability"]) - probability) < 1e-5
        assert abs(float(row["probability_neg"]) + float(row["probability_pos"]) - 1) < 1e-5


def test_jsonl_in_jsonl_out_with_empty_text(tmp_path: Path, checkpoint: Path) -> None:
    source = tmp_path / "in.jsonl"
    records = [{"body": text, "meta": {"i": i}} for i, text in enumerate(TEXTS)]
    records.append({"body": "", "meta": None})
    source.write_text("".join(json.dumps(record) + "\n" for record in records))
    stats = predict_file(checkpoint, source, tmp_path / "out.jsonl", text_fields="body",
                         progress=False, device_name="cpu")
    assert stats.rows == 5 and stats.empty == 1
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[0]["meta"] == {"i": 0}
    assert [row["predicted_label"] for row in rows[:4]] == [e[0] for e in expected(checkpoint)]
    assert rows[4]["predicted_label"] is None


def test_predict_file_errors_name_the_fix(tmp_path: Path, checkpoint: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,body\n1,good\n")
    with pytest.raises(RnnclfError, match="--text-field text is not a column.*id, body"):
        predict_file(checkpoint, source, tmp_path / "out.csv", progress=False)
    with pytest.raises(RnnclfError, match="cannot tell the format"):
        predict_file(checkpoint, source, tmp_path / "out.xlsx", progress=False)
    clash = tmp_path / "clash.csv"
    clash.write_text("text,predicted_label\ngood,x\n")
    with pytest.raises(RnnclfError, match="already has a column 'predicted_label'"):
        predict_file(checkpoint, clash, tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()  # nothing half-written


def test_cli_predict_file(tmp_path: Path, checkpoint: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "good"}) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "-c", str(checkpoint), "--input", str(source),
                                 "--output", str(tmp_path / "o.jsonl"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o.jsonl").read_text())["predicted_label"] in LABELS
    result = runner.invoke(app, ["predict", "-c", str(checkpoint), "--input", str(source)])
    assert result.exit_code != 0 and "go together" in str(result.exception)


def test_config_show_fills_defaults_and_explains(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  cell: lstm\n")
    runner = CliRunner()
    result = runner.invoke(app, ["config", "show", str(path), "optim.lr=0.01"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["model"]["cell"] == "lstm" and shown["optim"]["lr"] == 0.01
    assert shown["train"]["name"] == "mine" and shown["data"]["dataset"] == "ag_news"
    assert load_config(None, []).to_dict()["model"].keys() == shown["model"].keys()
    explained = runner.invoke(app, ["config", "show", str(path), "--explain"]).output
    assert yaml.safe_load(explained) == yaml.safe_load(runner.invoke(
        app, ["config", "show", str(path)]).output)  # comments only
    assert "# recurrent cell (rnn | lstm | gru)" in explained


def test_config_validate_stops_at_the_first_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  epochs: 2\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  cel: gru\n")
    runner = CliRunner()
    result = runner.invoke(app, ["config", "validate", str(good)])
    assert result.exit_code == 0 and "ok" in result.output
    result = runner.invoke(app, ["config", "validate", str(good), str(bad)])
    assert result.exit_code != 0
    assert isinstance(result.exception, RnnclfError)
    assert "bad.yaml" in str(result.exception) and "did you mean 'cell'" in str(result.exception)


def test_shipped_configs_validate() -> None:
    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs
    result = CliRunner().invoke(app, ["config", "validate", *map(str, configs)])
    assert result.exit_code == 0, result.output
