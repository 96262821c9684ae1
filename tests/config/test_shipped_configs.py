"""Shipped configs by name: `rnnclf train agnews_lstm` from any folder, an existing file wins,
unknown names are one line listing the shipped ones, `rnnclf config list` describes each."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from robustness_support import run_cli

from rnnclf.config import load_config
from rnnclf.config import shipped as shipped_module
from rnnclf.config.shipped import (
    DESCRIPTION_CHARS,
    description,
    resolve_config,
    shipped_configs,
    shipped_configs_dir,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_yaml_in_configs_is_shipped_by_name() -> None:
    assert shipped_configs_dir() == CONFIGS  # a checkout reads configs/ beside the package
    assert list(shipped_configs()) == sorted(path.stem for path in CONFIGS.glob("*.yaml"))
    assert "agnews_lstm" in shipped_configs()


def test_config_list_names_and_describes_each(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["config", "list"], capsys)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(shipped_configs())
    for line in lines:
        name, text = line.split(maxsplit=1)
        assert 10 < len(text) <= DESCRIPTION_CHARS + 4, line
        assert not text.startswith("rnnclf "), line  # the command line is not the description
    listed = dict(line.split(maxsplit=1) for line in lines)
    assert listed["agnews_lstm"].startswith("A one-layer bidirectional LSTM on AG News")
    assert listed["smoke"].startswith("A tiny, fast model")


def test_train_by_name_from_another_folder(capsys: pytest.CaptureFixture[str]) -> None:
    # The working directory is the test's tmp_path (conftest), far from configs/.
    for given in ("agnews_lstm", "agnews_lstm.yaml"):
        result = run_cli(["train", given, "train.epochs=1", "--print-config"], capsys)
        assert result.code == 0, result.stderr
        config = yaml.safe_load(result.stdout)
        assert (config["model"]["cell"], config["train"]["name"]) == ("lstm", "agnews_lstm")
        assert config["train"]["epochs"] == 1
    assert run_cli(["config", "validate", "agnews_gru", "smoke"], capsys).code == 0
    assert load_config(Path("agnews_rnn")).model.cell == "rnn"


def test_an_existing_file_wins_over_a_shipped_name(tmp_path: Path) -> None:
    (tmp_path / "agnews_lstm.yaml").write_text("model:\n  cell: gru\n", encoding="utf-8")
    assert resolve_config(Path("agnews_lstm.yaml")) == Path("agnews_lstm.yaml")
    assert load_config(Path("agnews_lstm.yaml")).model.cell == "gru"
    assert load_config(Path("agnews_lstm")).model.cell == "lstm"  # no such file: shipped
    assert load_config(CONFIGS / "agnews_gru.yaml").model.cell == "gru"  # a path still works


def test_unknown_names_are_one_line_listing_the_shipped_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    line = run_cli(["train", "agnews_lsm"], capsys).assert_one_error_line()
    assert "did you mean 'agnews_lstm'?" in line
    assert all(name in line for name in shipped_configs())
    line = run_cli(["train", "configs/agnews_best.yaml"], capsys).assert_one_error_line()
    assert "does not exist" in line and "rnnclf train agnews_best" in line
    line = run_cli(["config", "show", "elsewhere/mine.yaml"], capsys).assert_one_error_line()
    assert "elsewhere/mine.yaml does not exist" in line and "agnews_lstm" in line


def test_installed_package_data_comes_first(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """In a wheel the configs are rnnclf/configs/ (package data): that folder is read."""
    package = tmp_path / "site" / "rnnclf"
    (package / "configs").mkdir(parents=True)
    (package / "configs" / "only_here.yaml").write_text(
        "# rnnclf train only_here\n# Just one.\nmodel:\n  cell: rnn\n", encoding="utf-8")
    monkeypatch.setattr(shipped_module, "_PACKAGE", package)
    assert list(shipped_configs()) == ["only_here"]
    assert load_config(Path("only_here")).model.cell == "rnn"
    monkeypatch.setattr(shipped_module, "_PACKAGE", tmp_path / "nowhere" / "rnnclf")
    assert shipped_configs_dir() is None and shipped_configs() == {}


@pytest.mark.parametrize(("comment", "expected"), [
    ("# rnnclf train x\n# A short one. More words here.\n", "A short one"),
    ("# A config without its command line\n", "A config without its command line"),
    ("# rnnclf train x\n# A long description that goes on, and on: past the end of one line of\n"
     "# the terminal, so it is cut where a clause ends rather than in a word.\n",
     "A long description that goes on, and on: past the end of one line of the terminal"),
    ("model:\n  cell: gru\n", ""),
])
def test_description_is_the_first_sentence_after_the_command(tmp_path: Path, comment: str,
                                                              expected: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(comment + "model:\n  cell: gru\n", encoding="utf-8")
    assert description(path) == expected
