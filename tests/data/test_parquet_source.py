"""data.dataset=parquet: columns by name, label discovery, one-line errors, the missing extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rnnclf.config import DataConfig, load_config
from rnnclf.data.dataset import prepare_eval_split, prepare_training_data
from rnnclf.errors import RnnclfError

pa = pytest.importorskip("pyarrow")
parquet = pytest.importorskip("pyarrow.parquet")


def write_parquet(path: Path, columns: dict[str, list], schema: object = None) -> Path:
    parquet.write_table(pa.table(columns, schema=schema), path)
    return path


def data_config(folder: Path, **values: object) -> DataConfig:
    settings = {"dataset": "parquet", "dir": folder, "train_file": "train.parquet",
                "test_file": "test.parquet", "min_freq": 1, "val_fraction": 0.25, **values}
    return load_config(None, [f"data.{key}={value}" for key, value in settings.items()]).data


def test_text_fields_are_joined_and_labels_sorted(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train.parquet", {
        "title": ["meow", "bark", "swim", "purr"], "body": ["cat", "dog", "fish", "kitten"],
        "animal": ["cats", "dogs", "fish", "cats"], "id": [1, 2, 3, 4]})
    config = data_config(tmp_path, text_fields="title,body", label_field="animal")
    data = prepare_training_data(config)
    assert data.label_names == ["cats", "dogs", "fish"]
    assert len(data.train) + len(data.val) == 4
    # title and body joined: two tokens per row ("meow cat")
    assert data.train.lengths.tolist() + data.val.lengths.tolist() == [2, 2, 2, 2]


def test_integer_labels_sort_numerically_and_eval_maps_them(tmp_path: Path) -> None:
    labels = [10, 2, 2, 10, 2, 10, 10, 2]
    write_parquet(tmp_path / "train.parquet", {
        "text": [f"word{label} x" for label in labels], "label": labels})
    config = data_config(tmp_path)
    data = prepare_training_data(config)
    assert data.label_names == ["2", "10"]
    test = write_parquet(tmp_path / "test.parquet", {"text": ["word2", "word10", "nope"],
                                                     "label": [2, 10, 7]})
    with pytest.raises(RnnclfError, match=r"test.parquet, row 3: label '7' is not one of"):
        prepare_eval_split(config, data.vocab, test, label_names=data.label_names)
    config.on_bad_row = "skip"
    split, skipped = prepare_eval_split(config, data.vocab, test, label_names=data.label_names)
    assert split.labels.tolist() == [0, 1] and skipped == 1


def test_null_values_are_bad_rows(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train.parquet", {"text": ["a b", None, "c d", "e f"],
                                               "label": ["x", "y", "y", "x"]})
    with pytest.raises(RnnclfError, match=r"train.parquet, row 2: a text or label value is "
                                          r"missing .*data.on_bad_row=skip"):
        prepare_training_data(data_config(tmp_path))
    data = prepare_training_data(data_config(tmp_path, on_bad_row="skip"))
    assert data.skipped_rows == 1 and len(data.train) + len(data.val) == 3


@pytest.mark.parametrize("columns, override, message", [
    ({"text": ["a"], "label": ["x"]}, {"text_fields": "body"},
     "data.text_fields: column 'body' is not in .*columns: text, label"),
    ({"text": ["a"], "label": ["x"]}, {"label_field": "y"}, "data.label_field: column 'y'"),
    ({"text": [["a", "b"]], "label": ["x"]}, {},
     "data.text_fields: column 'text' of .* holds list<.*>, not text"),
    ({"text": [1], "label": ["x"]}, {}, "column 'text' of .* holds int64, not text"),
    ({"text": ["a"], "label": [True]}, {},
     "data.label_field: column 'label' of .* holds bool, not a label"),
])
def test_wrong_columns_are_one_line(tmp_path: Path, columns: dict, override: dict,
                                    message: str) -> None:
    write_parquet(tmp_path / "train.parquet", columns)
    with pytest.raises(RnnclfError, match=message) as caught:
        prepare_training_data(data_config(tmp_path, **override))
    assert "\n" not in str(caught.value)


def test_not_a_parquet_file_and_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "train.parquet").write_text("text,label\na,b\n")
    with pytest.raises(RnnclfError, match="cannot read .*train.parquet as Parquet"):
        prepare_training_data(data_config(tmp_path))
    with pytest.raises(RnnclfError, match="other.parquet is missing"):
        prepare_training_data(data_config(tmp_path, train_file="other.parquet"))


def test_missing_extra_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_parquet(tmp_path / "train.parquet", {"text": ["a", "b"], "label": ["x", "y"]})
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(RnnclfError, match=r"^data.dataset=parquet needs the parquet extra: "
                                          r"pip install 'rnnclf\[parquet\]'$"):
        prepare_training_data(data_config(tmp_path))


def test_dictionary_columns_from_pandas_categoricals(tmp_path: Path) -> None:
    labels = pa.array(["pos", "neg", "pos", "neg"]).dictionary_encode()
    write_parquet(tmp_path / "train.parquet", {"text": ["good", "bad", "great", "awful"],
                                               "label": labels})
    assert prepare_training_data(data_config(tmp_path)).label_names == ["neg", "pos"]
