"""Experiment configuration: one dataclass per section, every field with its default, a one-line
meaning (`help`) and the values it accepts. Loading them from YAML lives in config/loading.py.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def param(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    max_exclusive: bool = False,
    min_exclusive: bool = False,
) -> Any:
    """A config field: its default, a one-line meaning, and the values it accepts."""
    limits = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "max_exclusive": max_exclusive,
    }
    if isinstance(default, list):  # a list field: each config gets its own copy
        return field(default_factory=lambda: list(default), metadata=limits)
    return field(default=default, metadata=limits)


@dataclass
class DataConfig:
    dataset: str = param("ag_news", "which dataset reader to use: AG News, your own file "
                         "(csv, jsonl, parquet: needs rnnclf[parquet]), or a Hugging Face "
                         "dataset (hf: needs rnnclf[hf])",
                         choices=("ag_news", "csv", "jsonl", "parquet", "hf"))
    dir: str = param(
        "", "folder with the data files; empty: for ag_news $RNNCLF_DATA_DIR, else "
        "~/.cache/rnnclf/ag_news; for own data the current folder"
    )
    train_file: str = param("train.csv", "training file name inside data.dir")
    test_file: str = param("test.csv", "test file name inside data.dir (read only by eval)")
    download: bool = param(True, "download AG News (MD5-verified) when the files are missing")
    text_fields: str = param("text", "own data: the column(s) holding the text, comma-separated "
                             "and joined by a space; 0-based numbers when data.header is false")
    label_field: str = param("label", "own data: the column holding the label (a name or a "
                             "whole number); a 0-based number when data.header is false")
    header: bool = param(True, "csv: the first row names the columns")
    hf_name: str = param("", "hf: a save_to_disk folder (relative to data.dir) or a Hugging "
                         "Face Hub dataset name (owner/name); empty: read data.train_file / "
                         "data.test_file (.csv, .json, .jsonl, .parquet) with datasets' builders")
    hf_config: str = param("", "hf: the Hub dataset's configuration (subset); empty: its default")
    hf_train_split: str = param("train", "hf: the split to train on (validation is carved "
                                "from it)")
    hf_test_split: str = param("test", "hf: the split eval reads")
    clean: bool = param(True, "undo AG News artifacts (\\ line breaks, #39; entities, markup)")
    val_fraction: float = param(
        0.05, "share of training rows held out for validation", min=0.0, max=0.5,
        min_exclusive=True,
    )
    split_seed: int = param(1234, "seed of the train/validation split (fixed across runs)", min=0)
    min_freq: int = param(2, "keep tokens seen at least this often in the training split", min=1)
    max_vocab_size: int = param(50000, "largest vocabulary incl. <pad>/<unk>; 0 = no limit", min=0)
    max_length: int = param(256, "longest text in tokens; longer texts are truncated", min=1)
    multi_label: bool = param(False, "csv/jsonl: each row may carry several labels (or none): "
                              "sigmoid outputs, binary cross-entropy, a tuned threshold per label")
    label_separator: str = param("|", "multi-label csv/jsonl: what separates the labels in the "
                                 "label field (a JSONL field may also hold a list of labels)")
    on_bad_row: str = param("error", "malformed data row: stop with its line, or skip it",
                            choices=("error", "skip"))
    cache_dir: str = param(
        "", "where tokenized tensors are cached; empty: $RNNCLF_CACHE_DIR, else ~/.cache/rnnclf"
    )


@dataclass
class ModelConfig:
    embedding_dim: int = param(50, "size of each token's embedding vector (the size of the "
                               "pretrained vectors when there are any)", min=1)
    cell: str = param("gru", "recurrent cell", choices=("rnn", "lstm", "gru"))
    hidden_size: int = param(128, "hidden units per direction per layer", min=1)
    num_layers: int = param(1, "stacked recurrent layers", min=1, max=16)
    bidirectional: bool = param(True, "read the text in both directions")
    pooling: str = param("max", "how the per-token states become one vector",
                         choices=("last", "mean", "max", "attention"))
    embedding_dropout: float = param(0.25, "dropout on embeddings", min=0.0, max=1.0,
                                     max_exclusive=True)
    rnn_dropout: float = param(0.0, "dropout between stacked layers (needs num_layers > 1)",
                               min=0.0, max=1.0, max_exclusive=True)
    dropout: float = param(0.3, "dropout before the output layer", min=0.0, max=1.0,
                           max_exclusive=True)
    pretrained_embeddings: str = param(
        "glove.6B.50d", "word vectors to start the embeddings from: glove.6B.50d (GloVe, "
        "installed with rnnclf), or the path of a GloVe/word2vec TEXT file; empty: random"
    )
    freeze_embeddings: bool = param(False, "keep the embedding table fixed during training")
    pretrained_vocab: int = param(
        0, "also put the word vectors' first N words (their most frequent) in the vocabulary, "
        "so words the training split lacks keep their pretrained vector (on top of "
        "data.max_vocab_size); 0 = training words only", min=0)
    ngram_order: int = param(
        2, "add a bag of hashed word n-grams of orders 1..N beside the RNN (fastText's "
        "features); 0 = off (the RNN alone), 2 = words and bigrams", min=0, max=5)
    ngram_buckets: int = param(65536, "hash rows of the n-gram table (fewer when the training "
                               "split has fewer n-gram positions)", min=1)
    ngram_dim: int = param(32, "size of each n-gram vector", min=1)
    ngram_dropout: float = param(0.3, "share of a text's n-grams left out of its bag at random "
                                 "while training", min=0.0, max=1.0, max_exclusive=True)
    init_from: str = param(
        "", "start the embedding and recurrent layers from this pretrained run folder or "
        "checkpoint (`rnnclf pretrain`, docs/pretraining.md); a bare name is looked up in "
        "train.runs_dir; empty: no pretrained encoder")


@dataclass
class OptimConfig:
    name: str = param("adamw", "optimizer", choices=("adamw", "sgd"))
    lr: float = param(3e-3, "peak learning rate", min=0.0, min_exclusive=True)
    weight_decay: float = param(0.01, "decoupled weight decay (AdamW) or L2 (SGD)", min=0.0)
    momentum: float = param(0.9, "SGD momentum", min=0.0, max=1.0, max_exclusive=True)
    schedule: str = param("linear", "lr after warm-up: linear decay to 0, cosine, or constant",
                          choices=("linear", "cosine", "constant"))
    warmup_fraction: float = param(0.05, "share of all steps spent warming up the lr",
                                   min=0.0, max=1.0)
    grad_clip: float = param(1.0, "clip the gradient norm to this; 0 = no clipping", min=0.0)
    label_smoothing: float = param(0.1, "label smoothing of the cross-entropy loss",
                                   min=0.0, max=1.0, max_exclusive=True)
    skip_nonfinite: bool = param(False, "skip a step whose loss or gradient is NaN/inf instead "
                                 "of stopping the run (costs a device sync per step)")
    sparse_embedding: bool = param(
        True, "AdamW only: update just the rows of the word and n-gram tables that a batch "
        "uses (SparseAdam) instead of all of them every step (docs/accuracy.md)"
    )
    class_weights: str | list = param(
        "none", "weight of each class in the loss: none, balanced (n_samples / (n_classes * "
        "count) over the training split, as scikit-learn), or one number per class in label "
        "order, e.g. [1, 19] (docs/imbalance.md)"
    )
    discriminative_lr: float = param(
        1.0, "divide the lr by this once per layer group below the output layer (ULMFiT: 2.6; "
        "groups: head, each recurrent layer top down, embedding); 1 = one lr", min=1.0)
    gradual_unfreeze: bool = param(
        False, "train only the output layer in epoch 1, then unfreeze one more layer group "
        "per epoch, top down (ULMFiT; for model.init_from)")


@dataclass
class TrainConfig:
    name: str = param("", "run name (runs/<name>/); empty: the config file's name, or 'default'")
    runs_dir: str = param("", "folder that holds the run folders; empty: $RNNCLF_RUNS_DIR, "
                          "else ./runs")
    epochs: int = param(4, "passes over the training split", min=1)
    batch_size: int = param(128, "training batch size", min=1)
    eval_batch_size: int = param(1024, "batch size for validation, eval and predict", min=1)
    early_stopping_patience: int = param(
        2, "stop after this many epochs without a better val accuracy (or loss, see "
        "select_by); 0 = never", min=0
    )
    select_by: str = param("accuracy", "which val figure picks best.pt and drives early "
                           "stopping: accuracy (higher), or loss (lower; smoother on a small "
                           "val split); micro_f1 equals accuracy for single-label data and is "
                           "what accuracy means with data.multi_label; macro_f1 (higher) is the "
                           "mean of the classes' F1, for imbalanced classes (docs/imbalance.md)",
                           choices=("accuracy", "loss", "micro_f1", "macro_f1"))
    seed: int = param(0, "seed of initialisation, shuffling and dropout", min=0)
    ensemble: int = param(1, "train this many models one after another (seeds seed, "
                          "seed+1000, ...) and average their probabilities", min=1, max=16)
    ensemble_members: list[dict] = param(
        [], "members that differ: one mapping of section.key: value overrides per member "
        "(e.g. [{model.cell: lstm}, {model.ngram_order: 0}]), trained like train.ensemble's "
        "seeds; empty: train.ensemble copies of the model")
    device: str = param("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    num_threads: int = param(0, "CPU threads for torch; 0 = torch's default", min=0)
    precision: str = param("fp32", "training arithmetic: fp32, or bf16/fp16 autocast (fp16: CUDA "
                           "only, with loss scaling)", choices=("fp32", "bf16", "fp16"))
    prefetch_batches: int = param(2, "batches a background thread prepares ahead; 0 = none",
                                  min=0)
    progress: bool = param(True, "show a progress bar per epoch")
    tensorboard: bool = param(False, "log scalars and hyperparameters to runs/<name>/tb/ "
                              "(needs rnnclf[tensorboard]); the same as tensorboard in "
                              "train.loggers")
    loggers: list[str] = param([], "experiment trackers, e.g. [tensorboard, mlflow]; mlflow "
                               "needs rnnclf[mlflow] and logs to $MLFLOW_TRACKING_URI, else to "
                               "runs/<name>/mlflow.db", choices=("tensorboard", "mlflow"))
    mlflow_experiment: str = param("rnnclf", "the MLflow experiment the run is logged under")


@dataclass
class PretrainConfig:
    """`rnnclf pretrain`: the encoder trained as a language model (docs/pretraining.md); model.*
    gives its architecture, optim.* and train.* the rest of the run."""

    name: str = param("", "run name of the language model; empty: <train.name>_lm")
    epochs: int = param(1, "passes over the language model's texts", min=1)
    lr: float = param(3e-3, "peak learning rate of the language model", min=0.0,
                      min_exclusive=True)
    batch_size: int = param(64, "texts per language-model batch", min=1)
    output: str = param("adaptive", "output layer over the vocabulary: an adaptive softmax, or "
                        "a full softmax tied to the embedding (with a projection)",
                        choices=("adaptive", "tied"))
    output_vocab: int = param(0, "predict only the N most frequent tokens (the rest as <unk>); "
                              "0 = the whole vocabulary", min=0)
    val_fraction: float = param(0.02, "share of the training split's texts held out to measure "
                                "the language model's perplexity", min=0.0, max=0.5,
                                min_exclusive=True)
    unlabeled_files: str = param(
        "", "more text, comma-separated paths: .txt (one text per line), or .csv/.jsonl read "
        "with data.text_fields (data.header for csv); empty: the training split alone")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = typing.get_type_hints(Config)


def field_table(section_type: type) -> dict[str, tuple[type, dict[str, Any]]]:
    """Each field of a section: its type and its metadata (help, choices, limits)."""
    hints = typing.get_type_hints(section_type)
    return {f.name: (hints[f.name], dict(f.metadata)) for f in dataclasses.fields(section_type)}


def default_runs_dir() -> Path:
    """Where runs go when train.runs_dir is empty, and where eval/predict look for them."""
    return Path(os.environ.get("RNNCLF_RUNS_DIR") or "runs").expanduser()
