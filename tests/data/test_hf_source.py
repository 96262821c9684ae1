"""data.dataset=hf: save_to_disk folders, local data files, ClassLabel names, one-line errors.

Nothing is downloaded: every dataset is built here, and the Hub is switched off (offline mode)
for the whole module, so the Hub-name path can only fail, with a clear line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rnnclf.config import DataConfig, load_config
from rnnclf.data.dataset import prepare_eval_split, prepare_training_data
from rnnclf.data.info import dataset_info
from rnnclf.errors import RnnclfError

datasets = pytest.importorskip("datasets")
NAMES = ["sport", "tech", "art"]  # not sorted: the ClassLabel's order must win
WORDS = {"sport": "ball goal team", "tech": "chip code data", "art": "paint song film"}


@pytest.fixture(autouse=True)
def hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network and no writes to ~/.cache/huggingface, whenever datasets was imported."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_hub"))


def rows(count: int, offset: int = 0) -> dict[str, list]:
    labels = [(index + offset) % 3 for index in range(count)]
    return {"text": [WORDS[NAMES[label]] for label in labels], "label": labels}


def class_label_set(count: int, offset: int = 0) -> object:
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=NAMES)})
    return datasets.Dataset.from_dict(rows(count, offset), features=features)


def save_dict(folder: Path, **splits: object) -> Path:
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def data_config(**values: object) -> DataConfig:
    settings = {"dataset": "hf", "min_freq": 1, "val_fraction": 0.25, **values}
    return load_config(None, [f"data.{key}={value}" for key, value in settings.items()]).data


def test_save_to_disk_dict_uses_class_label_names(tmp_path: Path) -> None:
    save_dict(tmp_path / "saved", train=class_label_set(12), test=class_label_set(6, 1))
    config = data_config(dir=tmp_path, hf_name="saved")
    data = prepare_training_data(config)
    assert data.label_names == NAMES
    labels = sorted(data.train.labels.tolist() + data.val.labels.tolist())
    assert labels == [0] * 4 + [1] * 4 + [2] * 4
    info = dataset_info(config)
    assert info["train_file"].endswith("saved[train]") and info["test_file"].endswith("[test]")
    # test rows start at offset 1: tech, art, sport, ...
    assert info["splits"]["test"]["labels"] == {"sport": 2, "tech": 2, "art": 2}


def test_class_label_maps_by_name_across_sets(tmp_path: Path) -> None:
    """An eval set whose ClassLabel orders the names differently is matched by name."""
    save_dict(tmp_path / "saved", train=class_label_set(12))
    config = data_config(dir=tmp_path, hf_name="saved")
    data = prepare_training_data(config)
    other = datasets.Dataset.from_dict(
        {"text": ["ball goal", "chip"], "label": [0, 1]},
        features=datasets.Features({"text": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["tech", "sport"])}))
    other.save_to_disk(str(tmp_path / "other"))
    split, skipped = prepare_eval_split(config, data.vocab, tmp_path / "other",
                                        label_names=data.label_names)
    assert split.labels.tolist() == [NAMES.index("tech"), NAMES.index("sport")]
    assert skipped == 0


def test_single_dataset_folder_is_the_training_set(tmp_path: Path) -> None:
    class_label_set(12).save_to_disk(str(tmp_path / "one"))
    config = data_config(dir=tmp_path, hf_name="one")
    assert prepare_training_data(config).label_names == NAMES
    info = dataset_info(config)
    assert info["test_file"] is None  # no test split: eval needs --data-file
    with pytest.raises(RnnclfError, match="holds one Dataset without splits"):
        from rnnclf.data.sources import locate_split

        locate_split(config, "test")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_local_data_files_through_datasets_builders(tmp_path: Path, suffix: str) -> None:
    plain = datasets.Dataset.from_dict({"body": ["ball goal", "chip code"] * 6,
                                        "topic": ["sport", "tech"] * 6})
    writer = {".csv": plain.to_csv, ".jsonl": plain.to_json, ".parquet": plain.to_parquet}
    writer[suffix](str(tmp_path / f"train{suffix}"))
    config = data_config(dir=tmp_path, train_file=f"train{suffix}", text_fields="body",
                         label_field="topic")
    data = prepare_training_data(config)
    assert data.label_names == ["sport", "tech"]  # plain string labels: sorted, as for csv
    assert len(data.train) + len(data.val) == 12


def test_folder_of_data_files_loads_with_load_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    datasets.Dataset.from_dict({"text": ["a b", "c d"] * 4, "label": [3, 1] * 4}).to_parquet(
        str(folder / "train.parquet"))
    datasets.Dataset.from_dict({"text": ["a b"], "label": [3]}).to_parquet(
        str(folder / "test.parquet"))
    config = data_config(dir=tmp_path, hf_name="files")
    data = prepare_training_data(config)
    assert data.label_names == ["1", "3"]  # integer labels without names: numeric order
    assert dataset_info(config)["splits"]["test"]["rows"] == 1


@pytest.mark.parametrize("values, message", [
    ({"hf_train_split": "training"},
     r"data.hf_train_split: split 'training' is not in .*saved \(splits: train, test\)"),
    ({"text_fields": "body"}, r"data.text_fields: column 'body' is not in .*saved\[train\] "
                              r"\(columns: text, label, tags\)"),
    ({"text_fields": "tags"}, r"data.text_fields: column 'tags' of .* holds list<.*>, not text"),
    ({"label_field": "tags"}, r"data.label_field: column 'tags' of .* not a label"),
    ({"hf_name": "./absent"}, r"data.hf_name: folder .*absent does not exist"),
])
def test_errors_are_one_line(tmp_path: Path, values: dict, message: str) -> None:
    tagged = class_label_set(6).add_column("tags", [["x", "y"]] * 6)
    save_dict(tmp_path / "saved", train=tagged, test=tagged)
    config = data_config(dir=tmp_path, **{"hf_name": "saved", **values})
    with pytest.raises(RnnclfError, match=message) as caught:
        prepare_training_data(config)
    assert "\n" not in str(caught.value)


def test_hub_name_offline_is_one_clear_line(tmp_path: Path) -> None:
    config = data_config(dir=tmp_path, hf_name="someone/not-cached", hf_config="small")
    with pytest.raises(RnnclfError) as caught:
        prepare_training_data(config)
    message = str(caught.value)
    assert message.startswith("cannot load the Hugging Face dataset someone/not-cached/small"
                              "[train] (")
    assert "HF_DATASETS_OFFLINE" in message and "\n" not in message


def test_not_a_saved_folder_or_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("hello")
    with pytest.raises(RnnclfError, match=r"datasets reads .csv, .json, .jsonl or .parquet"):
        prepare_training_data(data_config(dir=tmp_path, train_file="train.txt"))
    with pytest.raises(RnnclfError, match=r"train.csv is missing"):
        prepare_training_data(data_config(dir=tmp_path))


def test_missing_extra_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_dict(tmp_path / "saved", train=class_label_set(6))
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(RnnclfError, match=r"^data.dataset=hf needs the hf extra: "
                                          r"pip install 'rnnclf\[hf\]'$"):
        prepare_training_data(data_config(dir=tmp_path, hf_name="saved"))


def test_cache_follows_the_saved_data(tmp_path: Path) -> None:
    save_dict(tmp_path / "saved", train=class_label_set(12))
    config = data_config(dir=tmp_path, hf_name="saved")
    assert len(prepare_training_data(config).vocab) == 11  # <pad>, <unk> and 9 words
    save_dict(tmp_path / "saved2", train=datasets.Dataset.from_dict(
        {"text": ["new words only", "other new words"], "label": [0, 1]},
        features=class_label_set(1).features))
    (tmp_path / "saved").rename(tmp_path / "old")
    (tmp_path / "saved2").rename(tmp_path / "saved")
    assert "only" in prepare_training_data(config).vocab.itos  # not the cached vocabulary
