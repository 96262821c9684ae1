"""The shipped accuracy recipes load, open with their command, and the defaults stay valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnclf.config import Config, load_config, to_yaml
from rnnclf.errors import RnnclfError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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


def test_scientific_notation_without_a_dot_is_a_number(tmp_path: Path) -> None:
    """YAML 1.1 reads `3e-3` as text; a float field still takes it (file and override)."""
    path = tmp_path / "sci.yaml"
    path.write_text("optim:\n  lr: 3e-3\n", encoding="utf-8")
    assert load_config(path).optim.lr == 0.003
    assert load_config(None, ["optim.lr=1e-4"]).optim.lr == 0.0001
    assert load_config(None, ["optim.weight_decay=5E-2"]).optim.weight_decay == 0.05


def test_text_in_a_float_field_is_still_refused() -> None:
    with pytest.raises(RnnclfError, match="optim.lr"):
        load_config(None, ["optim.lr=fast"])
