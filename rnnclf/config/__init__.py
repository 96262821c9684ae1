"""Experiment config: schema (dataclasses), loading (YAML + overrides), resume rules, explain."""

from rnnclf.config.loading import from_dict, from_saved_dict, load_config, to_yaml
from rnnclf.config.schema import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig

__all__ = ["Config", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "from_dict",
           "from_saved_dict", "load_config", "to_yaml"]
