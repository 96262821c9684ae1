"""The shipped accuracy recipes load, open with their command, and the defaults stay valid."""

from __future__ import annotations

from pathlib import Path

from rnnclf.config import Config, load_config, to_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_agnews_best_loads_and_names_its_command() -> None:
    path = CONFIGS / "agnews_best.yaml"
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("#") and "rnnclf train configs/agnews_best.yaml" in first_line
    config = load_config(path)
    assert config.train.name == "agnews_best"
    assert config.train.early_stopping_patience > 0  # model selection on val, never on test


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text(to_yaml(Config()), encoding="utf-8")
    assert load_config(path).to_dict() == {**Config().to_dict(),
                                           "train": {**Config().train.__dict__,
                                                     "name": "defaults"}}
