"""configs/agnews_pretrained.yaml: its pretraining run is the run its fine-tuning starts from."""

from __future__ import annotations

from pathlib import Path

from rnnclf.config import load_config
from rnnclf.training.pretrain import pretrain_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "agnews_pretrained.yaml"


def test_agnews_pretrained_names_its_commands_and_its_encoder_run() -> None:
    first_line = CONFIG.read_text(encoding="utf-8").splitlines()[0]
    assert "rnnclf pretrain configs/agnews_pretrained.yaml" in first_line
    assert "rnnclf train configs/agnews_pretrained.yaml" in first_line
    config = load_config(CONFIG)
    lm = pretrain_config(config)
    assert lm.train.name == config.model.init_from == "agnews_pretrained_lm"
    assert lm.model.init_from == "" and lm.model.ngram_order == 0
    assert lm.train.epochs == config.pretrain.epochs and lm.optim.lr == config.pretrain.lr
    assert pretrain_config(lm).train.name == lm.train.name  # a resumed run keeps its name
