"""Reading AG News CSVs, and the cached, split, numericalized training data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from rnnclf.config.schema import DataConfig
from rnnclf.data import agnews
from rnnclf.data.agnews import LABEL_NAMES, read_rows
from rnnclf.data.dataset import (
    prepare_eval_split,
    prepare_training_data,
    resolve_data_dir,
    split_indices,
)
from rnnclf.errors import RnnclfError

GOOD = b'"1","Title one","Description one."\n"4","Chip news","A new processor."\n'


def csv_file(tmp_path: Path, data: bytes, name: str = "train.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(RnnclfError) as excinfo:
        read_rows(path)
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# --- read_rows -----------------------------------------------------------------------------------


def test_good_file(tmp_path: Path) -> None:
    rows, skipped = read_rows(csv_file(tmp_path, GOOD))
    assert skipped == []
    assert [(row.label, row.text) for row in rows] == [
        (0, "Title one Description one."), (3, "Chip news A new processor.")]


def test_embedded_quotes_commas_and_newlines(tmp_path: Path) -> None:
    data = b'"2","He said ""go""","a, b\nc"\n' + GOOD
    rows, _ = read_rows(csv_file(tmp_path, data))
    assert rows[0].text == 'He said "go" a, b\nc' and rows[0].label == 1
    assert len(rows) == 3


def test_byte_order_mark(tmp_path: Path) -> None:
    rows, skipped = read_rows(csv_file(tmp_path, b"\xef\xbb\xbf" + GOOD))
    assert skipped == [] and rows[0].label == 0 and rows[0].text.startswith("Title one")


def test_crlf_line_ends(tmp_path: Path) -> None:
    rows, skipped = read_rows(csv_file(tmp_path, GOOD.replace(b"\n", b"\r\n")))
    assert skipped == [] and len(rows) == 2
    assert all("\r" not in row.text for row in rows)
    assert rows[1].text == "Chip news A new processor."


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    rows, skipped = read_rows(csv_file(tmp_path, b"\n" + GOOD + b"\n\n"))
    assert len(rows) == 2 and skipped == []


def test_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD + b'"2","only a title"\n' + GOOD)
    message = error_of(path)
    assert f"{path}, line 3" in message
    assert "expected 3 columns" in message and "found 2" in message
    assert "data.on_bad_row=skip" in message


def test_line_numbers_count_embedded_newlines(tmp_path: Path) -> None:
    path = csv_file(tmp_path, b'"1","a","two\nlines"\n"2","b","c","extra"\n')
    assert f"{path}, line 3" in error_of(path)


def test_skip_mode_skips_and_counts(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD + b'"2","only a title"\n"5","x","y"\n' + GOOD)
    rows, skipped = read_rows(path, "skip")
    assert len(rows) == 4
    assert len(skipped) == 2
    assert skipped[0].startswith(f"{path}, line 3") and skipped[1].startswith(f"{path}, line 4")


@pytest.mark.parametrize("label", [b"5", b"0", b"World", b"", b"1.0"])
def test_bad_label(tmp_path: Path, label: bytes) -> None:
    path = csv_file(tmp_path, GOOD + b'"' + label + b'","t","d"\n')
    message = error_of(path)
    assert f"{path}, line 3" in message and "not one of 1, 2, 3, 4" in message


def test_empty_title_and_description(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD + b'"3","",""\n"3"," ","  "\n')
    assert "both empty" in error_of(path)
    rows, skipped = read_rows(path, "skip")
    assert len(rows) == 2 and len(skipped) == 2


def test_only_one_of_title_and_description_is_fine(tmp_path: Path) -> None:
    rows, _ = read_rows(csv_file(tmp_path, b'"3","","just a description"\n"2","a title",""\n'))
    assert [row.text for row in rows] == ["just a description", "a title"]


def test_invalid_utf8(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD + b'"2","caf\xe9 latin-1","d"\n' + GOOD)
    message = error_of(path)
    assert f"{path}, line 3" in message and "UTF-8" in message
    rows, skipped = read_rows(path, "skip")
    assert len(rows) == 4 and len(skipped) == 1
    assert all("\udce9" not in row.text for row in rows)


def test_valid_non_ascii_utf8(tmp_path: Path) -> None:
    rows, _ = read_rows(csv_file(tmp_path, '"2","Café – Zürich","naïve"\n'.encode()))
    assert rows[0].text == "Café – Zürich naïve"


def test_field_over_a_megabyte(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD + b'"2","' + b"x" * 1_100_000 + b'","d"\n' + GOOD)
    message = error_of(path)
    assert f"{path}, line 3" in message and "longer than" in message
    rows, skipped = read_rows(path, "skip")
    assert len(rows) == 4 and len(skipped) == 1


def test_field_size_limit_is_restored(tmp_path: Path) -> None:
    import csv

    before = csv.field_size_limit()
    read_rows(csv_file(tmp_path, GOOD))
    with pytest.raises(RnnclfError):
        read_rows(csv_file(tmp_path, b'"2","' + b"x" * 1_100_000 + b'","d"\n'))
    assert csv.field_size_limit() == before


def test_no_usable_rows(tmp_path: Path) -> None:
    assert "no usable rows" in error_of(csv_file(tmp_path, b""))
    with pytest.raises(RnnclfError) as excinfo:
        read_rows(csv_file(tmp_path, b'"9","a","b"\n'), "skip")
    assert "no usable rows" in str(excinfo.value)


def test_unreadable_path(tmp_path: Path) -> None:
    assert "cannot read" in error_of(tmp_path / "nope.csv")


def test_real_test_file(ag_news_dir: Path) -> None:
    rows, skipped = read_rows(ag_news_dir / "test.csv")
    assert len(rows) == 7600 and skipped == []
    counts = torch.bincount(torch.tensor([row.label for row in rows]), minlength=4)
    assert counts.tolist() == [1900, 1900, 1900, 1900]


# --- locate --------------------------------------------------------------------------------------


def test_missing_file_without_download(tmp_path: Path) -> None:
    config = DataConfig(dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(RnnclfError) as excinfo:
        prepare_training_data(config)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str((tmp_path / "nowhere" / "train.csv").resolve()) in message
    assert "missing" in message


def test_unknown_file_name_is_never_downloaded(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        agnews.locate(tmp_path, "mine.csv", download=True)
    assert "mine.csv is missing" in str(excinfo.value)


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNCLF_DATA_DIR", str(tmp_path / "env_data"))
    assert resolve_data_dir(DataConfig(dir="")) == (tmp_path / "env_data").resolve()
    assert resolve_data_dir(DataConfig(dir="rel")) == (tmp_path / "rel").resolve()  # to cwd


# --- prepare_training_data -----------------------------------------------------------------------


def data_config(folder: Path, **changes: object) -> DataConfig:
    return dataclasses.replace(DataConfig(dir=str(folder), download=False, val_fraction=0.1),
                               **changes)


def row_ids(split) -> set[int]:
    return set(split.offsets.tolist())  # each row has its own offset in the shared token tensor


def test_training_data_shapes(tiny_agnews: Path) -> None:
    data = prepare_training_data(data_config(tiny_agnews))
    assert data.label_names == list(LABEL_NAMES)
    assert (len(data.train), len(data.val)) == (360, 40)
    assert data.skipped_rows == 0
    assert data.vocab.itos[:2] == ["<pad>", "<unk>"]
    assert "football" in data.vocab and "president" in data.vocab
    assert (data.train.lengths >= 1).all() and data.train.tokens.max() < len(data.vocab)
    assert sorted(set(data.train.labels.tolist())) == [0, 1, 2, 3]


def test_val_split_disjoint_and_deterministic(tiny_agnews: Path, tmp_path: Path) -> None:
    first = prepare_training_data(data_config(tiny_agnews), cache_dir=tmp_path / "c1")
    again = prepare_training_data(data_config(tiny_agnews), cache_dir=tmp_path / "c2")
    assert row_ids(first.train).isdisjoint(row_ids(first.val))
    assert len(row_ids(first.train) | row_ids(first.val)) == 400
    for name in ("tokens", "offsets", "lengths", "labels"):
        assert torch.equal(getattr(first.val, name), getattr(again.val, name))
        assert torch.equal(getattr(first.train, name), getattr(again.train, name))
    other = prepare_training_data(data_config(tiny_agnews, split_seed=99),
                                  cache_dir=tmp_path / "c3")
    assert row_ids(other.val) != row_ids(first.val)


def test_vocab_comes_from_the_training_split_only(tiny_agnews: Path) -> None:
    path = tiny_agnews / "train.csv"
    # A word that occurs in only one row, twice: in the vocabulary only if that row trains.
    path.write_text(path.read_text(encoding="utf-8")
                    + '"1","zebraword zebraword","zebraword"\n', encoding="utf-8")
    data = prepare_training_data(data_config(tiny_agnews))
    last = len(data.train) + len(data.val) - 1
    zebra_in_val = last in split_indices(401, 0.1, 1234)[1].tolist()
    assert ("zebraword" in data.vocab) is not zebra_in_val


def test_split_indices() -> None:
    train, val = split_indices(1000, 0.05, 7)
    assert len(val) == 50 and len(train) == 950
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    assert train.tolist() == sorted(train.tolist())
    again = split_indices(1000, 0.05, 7)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, split_indices(1000, 0.05, 8)[1])
    assert len(split_indices(3, 0.01, 0)[1]) == 1  # at least one validation row
    with pytest.raises(RnnclfError):
        split_indices(1, 0.5, 0)


def counting_read_rows(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = agnews.read_rows

    def counted(path: Path, on_bad_row: str = "error"):
        calls.append(path)
        return real(path, on_bad_row)

    monkeypatch.setattr(agnews, "read_rows", counted)
    return calls


def test_cache_is_used_the_second_time(tiny_agnews: Path, monkeypatch: pytest.MonkeyPatch,
                                       isolated_env) -> None:
    calls = counting_read_rows(monkeypatch)
    first = prepare_training_data(data_config(tiny_agnews))
    assert len(calls) == 1
    assert len(list(isolated_env.cache_dir.glob("train-*.pt"))) == 1  # under $RNNCLF_CACHE_DIR

    def refuse(*args: object, **kwargs: object):
        raise AssertionError("read_rows called although the cache should answer")

    monkeypatch.setattr(agnews, "read_rows", refuse)
    second = prepare_training_data(data_config(tiny_agnews))
    assert second.vocab.itos == first.vocab.itos
    assert torch.equal(second.train.tokens, first.train.tokens)
    assert torch.equal(second.val.labels, first.val.labels)


@pytest.mark.parametrize("change", [{"min_freq": 3}, {"max_vocab_size": 50}, {"clean": False},
                                    {"val_fraction": 0.2}, {"split_seed": 5}])
def test_cache_key_changes_with_settings(tiny_agnews: Path, monkeypatch: pytest.MonkeyPatch,
                                         isolated_env, change: dict) -> None:
    calls = counting_read_rows(monkeypatch)
    base = prepare_training_data(data_config(tiny_agnews))
    changed = prepare_training_data(data_config(tiny_agnews, **change))
    assert len(calls) == 2
    assert len(list(isolated_env.cache_dir.glob("train-*.pt"))) == 2
    if "min_freq" in change:
        assert len(changed.vocab) < len(base.vocab)


def test_cache_key_changes_with_file_content(tiny_agnews: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_read_rows(monkeypatch)
    prepare_training_data(data_config(tiny_agnews))
    path = tiny_agnews / "train.csv"
    path.write_text(path.read_text(encoding="utf-8") + '"2","extra row","here"\n',
                    encoding="utf-8")
    data = prepare_training_data(data_config(tiny_agnews))
    assert len(calls) == 2 and len(data.train) + len(data.val) == 401


def test_damaged_cache_is_rebuilt(tiny_agnews: Path, isolated_env) -> None:
    first = prepare_training_data(data_config(tiny_agnews))
    (cache,) = isolated_env.cache_dir.glob("train-*.pt")
    cache.write_bytes(b"not a cache")
    again = prepare_training_data(data_config(tiny_agnews))
    assert again.vocab.itos == first.vocab.itos
    assert torch.load(cache, weights_only=True)["vocab"] == first.vocab.itos  # rewritten


def test_skipped_rows_are_counted(tiny_agnews: Path) -> None:
    path = tiny_agnews / "train.csv"
    path.write_text(path.read_text(encoding="utf-8") + '"7","bad","label"\n', encoding="utf-8")
    with pytest.raises(RnnclfError):
        prepare_training_data(data_config(tiny_agnews))
    data = prepare_training_data(data_config(tiny_agnews, on_bad_row="skip"))
    assert data.skipped_rows == 1 and len(data.train) + len(data.val) == 400


def test_eval_split_uses_the_given_vocab(tiny_agnews: Path) -> None:
    config = data_config(tiny_agnews)
    data = prepare_training_data(config)
    split, skipped = prepare_eval_split(config, data.vocab, tiny_agnews / "test.csv")
    assert len(split) == 80 and skipped == 0
    assert split.tokens.max() < len(data.vocab)
    assert split.labels.tolist().count(0) == 20
