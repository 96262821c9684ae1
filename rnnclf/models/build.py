"""Config -> model. Sizes that come from the data are passed in explicitly.

The optimizer and the learning-rate schedule are built in rnnclf.training (optimizers, schedule).
"""

from __future__ import annotations

from rnnclf.config.loading import member_config
from rnnclf.config.schema import Config, ModelConfig, OptimConfig
from rnnclf.models.classifier import Backend, RNNClassifier
from rnnclf.models.ensemble import EnsembleClassifier


def uses_sparse_embedding(config: OptimConfig) -> bool:
    """SparseAdam pairs with AdamW; SGD with momentum keeps the dense embedding gradient."""
    return config.sparse_embedding and config.name == "adamw"


def build_model(config: ModelConfig, vocab_size: int, num_classes: int, *,
                sparse_embedding: bool = False, backend: Backend | None = None
                ) -> RNNClassifier:
    """`sparse_embedding` only changes the kind of gradient; weights and state_dict are alike.
    `backend` computes the batches it handles faster (rnnclf/accel/backend.py
    `select_backend`); None runs the model's reference path."""
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
        sparse_embedding=sparse_embedding,
        ngram_order=config.ngram_order,
        ngram_buckets=config.ngram_buckets,
        ngram_dim=config.ngram_dim,
        ngram_dropout=config.ngram_dropout,
        backend=backend,
    )
    if config.freeze_embeddings:
        model.embedding.weight.requires_grad_(False)
    return model


def build_classifier(config: Config, vocab_size: int, num_classes: int, *,
                     backend: Backend | None = None) -> RNNClassifier | EnsembleClassifier:
    """The model a checkpoint's config describes: one network, or `train.ensemble` of them
    (each `train.ensemble_members` entry's model, or copies of `model`), each with `backend`."""
    if config.train.ensemble_members:
        models = [member_config(config, index).model
                  for index in range(len(config.train.ensemble_members))]
    elif config.train.ensemble > 1:
        models = [config.model] * config.train.ensemble
    else:
        return build_model(config.model, vocab_size, num_classes, backend=backend)
    return EnsembleClassifier([build_model(model, vocab_size, num_classes, backend=backend)
                               for model in models], multi_label=config.data.multi_label)
