"""The learning rate of each step: a linear warm-up, then constant, linear or cosine decay."""

from __future__ import annotations

import math

from rnnclf.config.schema import OptimConfig


def learning_rate(step: int, total_steps: int, config: OptimConfig) -> float:
    """Peak lr after a linear warm-up, then constant, linear or cosine decay to zero."""
    warmup = int(total_steps * config.warmup_fraction)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr * (1.0 - progress)
