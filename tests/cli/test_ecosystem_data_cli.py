"""`rnnclf train` / `eval` / `data info` end to end on a tiny Parquet file and a tiny
save_to_disk DatasetDict, both built here (nothing downloaded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from robustness_support import run_cli

WORDS = {"sport": ["ball", "goal", "team", "match"], "tech": ["chip", "code", "data", "robot"],
         "art": ["paint", "song", "film", "poem"]}
NAMES = ["tech", "sport", "art"]  # the ClassLabel's order, not sorted
TINY = ["data.min_freq=1", "model.embedding_dim=8", "model.pretrained_embeddings=",
        "model.hidden_size=8", "train.epochs=4", "train.batch_size=16", "train.progress=false",
        "optim.lr=0.02", "train.num_threads=1", "train.early_stopping_patience=0"]


def texts_and_labels(count: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    labels = [NAMES[index % 3] for index in range(count)]
    return [" ".join(rng.choices(WORDS[label], k=5)) for label in labels], labels


def test_parquet_train_eval_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    for name, count, seed in (("train", 240, 1), ("test", 60, 2)):
        texts, labels = texts_and_labels(count, seed)
        parquet.write_table(pa.table({"body": texts, "topic": labels}), f"{name}.parquet")
    data = ["data.dataset=parquet", "data.train_file=train.parquet",
            "data.test_file=test.parquet", "data.text_fields=body", "data.label_field=topic"]
    result = run_cli(["train", *data, *TINY, "train.name=pq"], capsys)
    assert result.code == 0, result.stderr
    report = run_cli(["eval", "runs/pq/best.pt", "--json"], capsys)
    assert report.code == 0, report.stderr
    metrics = json.loads(report.stdout)
    assert metrics["labels"] == ["art", "sport", "tech"] and metrics["accuracy"] > 0.9
    assert metrics["data"].endswith("test.parquet")
    info = run_cli(["data", "info", *data, "--json"], capsys)
    assert info.code == 0, info.stderr
    assert json.loads(info.stdout)["splits"]["test"]["rows"] == 60
    run_cli(["train", *data[:-1], "data.label_field=nope", *TINY, "train.name=bad"], capsys
            ).assert_one_error_line("data.label_field: column 'nope' is not in")


def test_save_to_disk_train_eval_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=NAMES)})
    splits = {}
    for name, count, seed in (("train", 240, 1), ("test", 60, 2)):
        texts, labels = texts_and_labels(count, seed)
        splits[name] = datasets.Dataset.from_dict(
            {"text": texts, "label": [NAMES.index(label) for label in labels]}, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    data = ["data.dataset=hf", "data.hf_name=saved"]
    result = run_cli(["train", *data, *TINY, "train.name=hf"], capsys)
    assert result.code == 0, result.stderr
    report = run_cli(["eval", "runs/hf/best.pt", "--json"], capsys)
    assert report.code == 0, report.stderr
    metrics = json.loads(report.stdout)
    assert metrics["labels"] == NAMES and metrics["accuracy"] > 0.9
    assert metrics["data"].endswith("saved[test]")
    on_folder = run_cli(["eval", "runs/hf/best.pt", "--data", "saved", "--json"], capsys)
    assert on_folder.code == 0, on_folder.stderr
    assert json.loads(on_folder.stdout)["accuracy"] == metrics["accuracy"]
    info = run_cli(["data", "info", *data], capsys)
    assert info.code == 0 and "saved[train]" in info.stdout, info.stderr
    run_cli(["train", *data, "data.hf_train_split=dev", *TINY, "train.name=bad"], capsys
            ).assert_one_error_line("split 'dev' is not in", "splits: train, test")
