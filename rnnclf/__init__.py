"""rnnclf: recurrent (RNN/LSTM/GRU) text classifiers from a YAML file.

The Python API (rnnclf/api.py) is reachable from here, loaded on first use so that `import
rnnclf` stays quick (no torch) and changes nothing global:

    from rnnclf import Predictor, evaluate, load_config, predict, train
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; looked up on first use (PEP 562).
_LAZY = {
    "load_config": "rnnclf.api", "train": "rnnclf.api", "evaluate": "rnnclf.api",
    "predict": "rnnclf.api", "TrainResult": "rnnclf.api", "Config": "rnnclf.config",
    "shipped_configs": "rnnclf.config.shipped", "RnnclfError": "rnnclf.errors",
    "Predictor": "rnnclf.inference.predictor", "Prediction": "rnnclf.inference.predictor",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'rnnclf' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
