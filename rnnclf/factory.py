"""Config -> model and optimizer. Sizes that come from the data are passed in explicitly."""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnclf.config import ModelConfig, OptimConfig
from rnnclf.model import RNNClassifier


def build_model(config: ModelConfig, vocab_size: int, num_classes: int) -> RNNClassifier:
    model = RNNClassifier(
        vocab_size=vocab_size,
        num_classes=num_classes,
        embedding_dim=config.embedding_dim,
        cell=config.cell,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        bidirectional=config.bidirectional,
        pooling=config.pooling,
        embedding_dropout=config.embedding_dropout,
        rnn_dropout=config.rnn_dropout,
        dropout=config.dropout,
    )
    if config.freeze_embeddings:
        model.embedding.weight.requires_grad_(False)
    return model


def build_optimizer(config: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    # No weight decay on biases and the embedding table: decaying rare words' vectors every
    # step would shrink them toward zero between the few steps that see them.
    decayed, not_decayed = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:  # frozen embeddings
            continue
        (not_decayed if name.startswith("embedding") or parameter.ndim < 2 else decayed).append(
            parameter
        )
    groups = [{"params": decayed, "weight_decay": config.weight_decay},
              {"params": not_decayed, "weight_decay": 0.0}]
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


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
