"""Own data: CSV / JSON-lines readers, label discovery, config checks, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from rnnclf.config import DataConfig, load_config
from rnnclf.data import tabular
from rnnclf.data.dataset import prepare_eval_split, prepare_training_data
from rnnclf.errors import RnnclfError
from rnnclf.inference.evaluate import evaluate_checkpoint
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.training.trainer import fit

REPO = Path(__file__).resolve().parents[2]
WORDS = {"cats": ["meow", "whiskers", "purr", "kitten"],
         "dogs": ["bark", "leash", "puppy", "fetch"],
         "fish": ["fins", "tank", "gills", "swim"]}


def animal_rows(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(label, title, body) rows whose words give the label away."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = sorted(WORDS)[index % 3]
        title = " ".join(rng.choices(WORDS[label], k=2))
        body = " ".join(rng.choices(WORDS[label] + ["the", "a", "today"], k=6))
        rows.append((label, title, body))
    return rows


def write_csv(path: Path, rows: list, header: list[str] | None = None) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def data_config(**values) -> DataConfig:
    return load_config(None, [f"data.{key}={value}" for key, value in values.items()]).data


def test_csv_with_header_joins_text_fields_and_sorts_label_names(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [["b", "x", "Hello", "world"], ["a", "y", "Two", "words"]],
                     header=["kind", "id", "title", "body"])
    config = data_config(dataset="csv", text_fields="title,body", label_field="kind")
    rows, skipped, names = tabular.read_training_rows(path, config)
    assert names == ["a", "b"]
    assert [(row.label, row.text) for row in rows] == [(1, "Hello world"), (0, "Two words")]
    assert skipped == []


def test_csv_without_header_uses_column_numbers(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [["2", "t", "first"], ["10", "u", "second"],
                                          ["2", "v", "third"]])
    config = data_config(dataset="csv", header="false", text_fields="1,2", label_field=0)
    rows, _, names = tabular.read_training_rows(path, config)
    assert names == ["2", "10"]  # integers sort numerically, not as text
    assert [row.label for row in rows] == [0, 1, 0]
    assert rows[1].text == "u second"


def test_jsonl_default_layout_and_integer_labels(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "good", "label": 1},
                                             {"text": "bad", "label": 0, "extra": [1]},
                                             {"text": "fine", "label": 1.0}])
    rows, _, names = tabular.read_training_rows(path, data_config(dataset="jsonl"))
    assert names == ["0", "1"]
    assert [row.label for row in rows] == [1, 0, 1]


@pytest.mark.parametrize("dataset", ["csv", "jsonl"])
def test_bad_rows_stop_with_their_line_or_are_skipped(tmp_path: Path, dataset: str) -> None:
    if dataset == "csv":
        path = tmp_path / "d.csv"
        path.write_text("text,label\nhello,a\nonly one column\nbye,b\n,a\n", encoding="utf-8")
        bad_lines = [3, 5]
    else:
        path = tmp_path / "d.jsonl"
        path.write_text('{"text": "hello", "label": "a"}\n{"text": "no label"}\nnot json\n'
                        '{"text": "bye", "label": "b"}\n', encoding="utf-8")
        bad_lines = [2, 3]
    with pytest.raises(RnnclfError, match=f"line {bad_lines[0]}:.*on_bad_row=skip"):
        tabular.read_training_rows(path, data_config(dataset=dataset))
    rows, skipped, names = tabular.read_training_rows(
        path, data_config(dataset=dataset, on_bad_row="skip"))
    assert [row.text for row in rows] == ["hello", "bye"] and names == ["a", "b"]
    assert [int(note.split("line ")[1].split(":")[0]) for note in skipped] == bad_lines


def test_missing_column_names_the_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [["hi", "a"]], header=["body", "label"])
    with pytest.raises(RnnclfError, match="column 'text' is not in the header.*body, label"):
        tabular.read_training_rows(path, data_config(dataset="csv"))


def test_one_label_is_not_enough(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [["hi", "a"], ["ho", "a"]], header=["text", "label"])
    with pytest.raises(RnnclfError, match="only one label"):
        tabular.read_training_rows(path, data_config(dataset="csv"))


@pytest.mark.parametrize("override, message", [
    ("data.text_fields=' , '", "data.text_fields"),
    ("data.dataset=xlsx", "choose one of ag_news, csv, jsonl, parquet, hf"),
    ("data.header=maybe", "use true or false"),
])
def test_config_rejects_bad_own_data_settings(override: str, message: str) -> None:
    with pytest.raises(RnnclfError, match=message):
        load_config(None, ["data.dataset=csv", override.replace("'", "")])


def test_header_false_needs_column_numbers() -> None:
    with pytest.raises(RnnclfError, match="0-based column numbers"):
        load_config(None, ["data.dataset=csv", "data.header=false", "data.text_fields=title"])


def test_eval_split_maps_labels_by_name_and_rejects_unknown(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", [[t, lab] for lab, t, _ in animal_rows(30, 1)],
                      header=["text", "label"])
    config = data_config(dataset="csv", dir=tmp_path, train_file=train.name, min_freq=1)
    data = prepare_training_data(config)
    assert data.label_names == ["cats", "dogs", "fish"]
    test = write_csv(tmp_path / "test.csv", [["meow purr", "cats"], ["bark", "dogs"],
                                             ["moo", "cows"]], header=["text", "label"])
    with pytest.raises(RnnclfError, match="line 4: label 'cows' is not one of the trained"):
        prepare_eval_split(config, data.vocab, test, label_names=data.label_names)
    config.on_bad_row = "skip"
    split, skipped = prepare_eval_split(config, data.vocab, test, label_names=data.label_names)
    assert split.labels.tolist() == [0, 1] and skipped == 1


def test_ag_news_reading_is_unchanged(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", [[str(i % 4 + 1), "Title", "words here"] for i in range(40)])
    data = prepare_training_data(data_config(dir=tmp_path, download="false"))
    assert data.label_names == ["World", "Sports", "Business", "Sci/Tech"]


@pytest.mark.parametrize("dataset", ["csv", "jsonl"])
def test_train_and_eval_end_to_end_on_own_data(tmp_path: Path, dataset: str) -> None:
    folder = tmp_path / "own"
    folder.mkdir()
    for name, count, seed in (("train", 240, 1), ("test", 60, 2)):
        rows = animal_rows(count, seed)
        if dataset == "csv":
            write_csv(folder / f"{name}.csv", [[f"id{i}", t, b, lab]
                                               for i, (lab, t, b) in enumerate(rows)],
                      header=["id", "title", "body", "animal"])
        else:
            write_jsonl(folder / f"{name}.jsonl",
                        [{"title": t, "body": b, "animal": lab} for lab, t, b in rows])
    config = load_config(None, [
        f"data.dataset={dataset}", f"data.dir={folder}", f"data.train_file=train.{dataset}",
        f"data.test_file=test.{dataset}", "data.text_fields=title,body",
        "data.label_field=animal", "data.min_freq=1", "model.embedding_dim=8",
        "model.pretrained_embeddings=", "model.hidden_size=8", "train.epochs=4",
        "train.batch_size=16", "train.progress=false",
        "optim.lr=0.02", "train.name=own", "train.num_threads=1"])
    summary = fit(config, log=lambda message: None)
    checkpoint = Path(summary["run_dir"]) / "best.pt"
    assert load_checkpoint(checkpoint)["label_names"] == ["cats", "dogs", "fish"]
    report = evaluate_checkpoint(checkpoint, device_name="cpu")
    assert report["labels"] == ["cats", "dogs", "fish"]
    assert report["accuracy"] > 0.9
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (checkpoint.parent / "curves.png").is_file()
    assert (checkpoint.parent / "confusion.png").is_file()


def test_shipped_example_config_trains(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    config = load_config(REPO / "configs" / "example_own_csv.yaml",
                         ["train.epochs=1", "train.progress=false", "train.num_threads=1"])
    summary = fit(config, log=lambda message: None)
    payload = load_checkpoint(Path(summary["run_dir"]) / "best.pt")
    assert payload["label_names"] == ["negative", "neutral", "positive"]
    assert summary["train_rows"] + summary["val_rows"] == 400
    assert torch.isfinite(torch.tensor(summary["epochs"][0]["train_loss"]))
