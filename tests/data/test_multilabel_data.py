"""Multi-label data: label sets from a separator or a JSON list, multi-hot targets, one-line
errors for malformed rows, unknown labels handled as for single-label data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnclf.config import DataConfig, load_config
from rnnclf.data import multilabel, tabular
from rnnclf.data.dataset import prepare_eval_split, prepare_training_data
from rnnclf.data.text import Vocab
from rnnclf.errors import RnnclfError


def data_config(tmp_path: Path, dataset: str = "csv", **values: object) -> DataConfig:
    overrides = [f"data.dataset={dataset}", "data.multi_label=true", f"data.dir={tmp_path}",
                 f"data.train_file=train.{dataset}", "data.min_freq=1", "data.val_fraction=0.25",
                 f"data.cache_dir={tmp_path / 'cache'}", "data.clean=false"]
    return load_config(None, overrides + [f"data.{key}={value}"
                                          for key, value in values.items()]).data


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list) -> Path:
    return write(path, "".join(json.dumps(record) + "\n" for record in records))


def one_line(error: pytest.ExceptionInfo[RnnclfError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_split_labels_strips_drops_empty_parts_and_repeats() -> None:
    assert multilabel.split_labels(" b | a|b||", "|") == ("b", "a")
    assert multilabel.split_labels("", "|") == ()
    assert multilabel.split_labels("x;y", ";") == ("x", "y")


def test_csv_separator_gives_label_sets_and_sorted_names(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\nred apple,fruit|red\n"
                 "green leaf, green | plant \nplain stone,\n")
    rows, skipped, names = tabular.read_training_rows(path, data_config(tmp_path))
    assert names == ["fruit", "green", "plant", "red"]
    assert [(row.labels, row.text) for row in rows] == [
        ((0, 3), "red apple"), ((1, 2), "green leaf"), ((), "plain stone")]  # no label: allowed
    assert skipped == []


def test_jsonl_lists_strings_and_numbers(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [
        {"text": "one", "label": ["b", "a"]}, {"text": "two", "label": "c;a"},
        {"text": "three", "label": []}, {"text": "four", "label": [1, 2.0]}])
    config = data_config(tmp_path, "jsonl", label_separator=";")
    rows, _, names = tabular.read_training_rows(path, config)
    assert names == ["1", "2", "a", "b", "c"]
    assert [row.labels for row in rows] == [(3, 2), (4, 2), (), (0, 1)]


def test_multi_hot_targets_reach_the_encoded_splits(tmp_path: Path) -> None:
    lines = ["text,label"] + [f"word{i} apple,{'a|b' if i % 2 else 'b'}" for i in range(8)]
    write(tmp_path / "train.csv", "\n".join(lines) + "\n")
    config = data_config(tmp_path)
    data = prepare_training_data(config)
    assert data.label_names == ["a", "b"]
    everything = torch.cat([data.train.labels, data.val.labels])
    assert everything.shape == (8, 2) and everything.dtype == torch.float32
    assert everything[:, 1].eq(1).all() and everything[:, 0].sum() == 4
    again = prepare_training_data(config)  # from the cache
    assert torch.equal(again.train.labels, data.train.labels)
    single = load_config(None, [f"data.dir={tmp_path}", "data.dataset=csv",
                                "data.train_file=train.csv", "data.min_freq=1",
                                f"data.cache_dir={tmp_path / 'cache'}"]).data
    assert prepare_training_data(single).label_names == ["a|b", "b"]  # its own cache entry


@pytest.mark.parametrize("value, shown", [
    ({"x": 1}, "{'x': 1}"), ([["a"]], "[['a']]"), (True, "True"), ([1.5], "[1.5]"),
])
def test_malformed_jsonl_label_is_one_line_with_the_line(tmp_path: Path, value: object,
                                                         shown: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "fine", "label": ["a"]},
                                                  {"text": "broken", "label": value}])
    with pytest.raises(RnnclfError) as error:
        tabular.read_training_rows(path, data_config(tmp_path, "jsonl"))
    message = one_line(error)
    assert "line 2" in message and shown in message and "list of names" in message
    assert "data.on_bad_row=skip" in message
    rows, skipped, _ = tabular.read_training_rows(path, data_config(tmp_path, "jsonl",
                                                                     on_bad_row="skip"))
    assert len(rows) == 1 and len(skipped) == 1


def test_unknown_label_in_eval_data_is_a_bad_row_as_for_single_label(tmp_path: Path) -> None:
    path = write(tmp_path / "test.csv", "text,label\nfine,a\nodd,a|zzz\nnone,\n")
    with pytest.raises(RnnclfError) as error:
        tabular.read_eval_rows(path, data_config(tmp_path), ["a", "b"])
    message = one_line(error)
    assert "line 3" in message and "'zzz' is not one of the trained labels (a, b)" in message
    rows, notes = tabular.read_eval_rows(path, data_config(tmp_path, on_bad_row="skip"),
                                         ["a", "b"])
    assert [row.labels for row in rows] == [(0,), ()] and len(notes) == 1
    split, skipped = prepare_eval_split(data_config(tmp_path, on_bad_row="skip"),
                                        Vocab.build([["fine"]]), path, label_names=["a", "b"])
    assert skipped == 1 and split.labels.tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_a_file_without_any_label_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\none,\ntwo, | \n")
    with pytest.raises(RnnclfError) as error:
        tabular.read_training_rows(path, data_config(tmp_path))
    assert "has no labels at all" in one_line(error)


def test_settings_multi_label_cannot_use_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError) as error:
        prepare_training_data(load_config(None, ["data.multi_label=true",
                                                 f"data.dir={tmp_path}"]).data)
    assert "data.dataset=csv or jsonl" in one_line(error)
    write(tmp_path / "train.csv", "text,label\none,a\n")
    config = data_config(tmp_path)
    config.label_separator = ""
    with pytest.raises(RnnclfError) as error:
        prepare_training_data(config)
    assert "data.label_separator is empty" in one_line(error)


def test_csv_empty_text_is_still_a_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\nfine,a\n,b\n")
    with pytest.raises(RnnclfError) as error:
        tabular.read_training_rows(path, data_config(tmp_path))
    assert "line 3: the text is empty" in one_line(error)


def test_data_info_counts_rows_per_label(tmp_path: Path) -> None:
    from rnnclf.data.info import dataset_info

    lines = ["text,label"] + [f"word{i} apple,{'a|b' if i % 2 else 'b'}" for i in range(8)]
    write(tmp_path / "train.csv", "\n".join(lines) + "\n")
    info = dataset_info(data_config(tmp_path), include_test=False)
    splits = info["splits"]
    assert {name: splits["train"]["labels"][name] + splits["val"]["labels"][name]
            for name in ("a", "b")} == {"a": 4, "b": 8}
