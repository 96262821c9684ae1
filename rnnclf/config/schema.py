"""Experiment configuration: one dataclass per section, loaded from YAML, overridden by `key=value`.

Every field has a default and a one-line meaning (`help`). Loading rejects unknown keys, wrong
types and out-of-range values with one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnclf.errors import RnnclfError


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
    return field(default=default, metadata=limits)


@dataclass
class DataConfig:
    dataset: str = param("ag_news", "which dataset reader to use: AG News, or your own file",
                         choices=("ag_news", "csv", "jsonl"))
    dir: str = param(
        "", "folder with the data files; empty: for ag_news $RNNCLF_DATA_DIR, else "
        "~/.cache/rnnclf/ag_news; for csv/jsonl the current folder"
    )
    train_file: str = param("train.csv", "training file name inside data.dir")
    test_file: str = param("test.csv", "test file name inside data.dir (read only by eval)")
    download: bool = param(True, "download AG News (MD5-verified) when the files are missing")
    text_fields: str = param("text", "csv/jsonl: the column(s) holding the text, comma-separated "
                             "and joined by a space; 0-based numbers when data.header is false")
    label_field: str = param("label", "csv/jsonl: the column holding the label (a name or a "
                             "whole number); a 0-based number when data.header is false")
    header: bool = param(True, "csv: the first row names the columns")
    clean: bool = param(True, "undo AG News artifacts (\\ line breaks, #39; entities, markup)")
    val_fraction: float = param(
        0.05, "share of training rows held out for validation", min=0.0, max=0.5,
        min_exclusive=True,
    )
    split_seed: int = param(1234, "seed of the train/validation split (fixed across runs)", min=0)
    min_freq: int = param(2, "keep tokens seen at least this often in the training split", min=1)
    max_vocab_size: int = param(50000, "largest vocabulary incl. <pad>/<unk>; 0 = no limit", min=0)
    max_length: int = param(256, "longest text in tokens; longer texts are truncated", min=1)
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
    ngram_buckets: int = param(262144, "hash rows of the n-gram table (fewer when the training "
                               "split has fewer n-gram positions)", min=1)
    ngram_dim: int = param(64, "size of each n-gram vector", min=1)
    ngram_dropout: float = param(0.3, "share of a text's n-grams left out of its bag at random "
                                 "while training", min=0.0, max=1.0, max_exclusive=True)


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
                           "val split)", choices=("accuracy", "loss"))
    seed: int = param(0, "seed of initialisation, shuffling and dropout", min=0)
    ensemble: int = param(1, "train this many models one after another (seeds seed, "
                          "seed+1000, ...) and average their probabilities", min=1, max=16)
    device: str = param("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    num_threads: int = param(0, "CPU threads for torch; 0 = torch's default", min=0)
    precision: str = param("fp32", "training arithmetic: fp32, or bf16/fp16 autocast (fp16: CUDA "
                           "only, with loss scaling)", choices=("fp32", "bf16", "fp16"))
    prefetch_batches: int = param(2, "batches a background thread prepares ahead; 0 = none",
                                  min=0)
    progress: bool = param(True, "show a progress bar per epoch")
    tensorboard: bool = param(False, "log scalars and hyperparameters to runs/<name>/tb/ "
                              "(needs rnnclf[tensorboard])")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = typing.get_type_hints(Config)
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(key: str, value: Any, kind: type, meta: dict[str, Any]) -> Any:
    """Check one value against its field's type and limits; return it in the field's type."""
    shown = repr(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise RnnclfError(f"{key}: {shown} is not allowed; use true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RnnclfError(f"{key}: {shown} is not allowed; use a whole number")
    elif kind is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 3e-3 (no dot) as text, yet it means a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RnnclfError(f"{key}: {shown} is not allowed; use a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise RnnclfError(f"{key}: {shown} is not allowed; use a finite number")
    elif kind is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise RnnclfError(f"{key}: {shown} is not allowed; use a text value")
        value = str(value)
    choices = meta.get("choices")
    if choices and value not in choices:
        hint = _did_you_mean(str(value), list(choices))
        allowed = ", ".join(choices)
        raise RnnclfError(f"{key}: {shown} is not allowed; choose one of {allowed}{hint}")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and (value < low or (meta.get("min_exclusive") and value == low)):
        bound = f"greater than {low}" if meta.get("min_exclusive") else f"at least {low}"
        raise RnnclfError(f"{key}: {shown} is not allowed; it must be {bound}")
    if high is not None and (value > high or (meta.get("max_exclusive") and value == high)):
        bound = f"less than {high}" if meta.get("max_exclusive") else f"at most {high}"
        raise RnnclfError(f"{key}: {shown} is not allowed; it must be {bound}")
    return value


def _field_table(section_type: type) -> dict[str, tuple[type, dict[str, Any]]]:
    hints = typing.get_type_hints(section_type)
    return {f.name: (hints[f.name], dict(f.metadata)) for f in dataclasses.fields(section_type)}


# Defaults that changed after runs were saved without the key: a saved run means the old value.
_SAVED_BEFORE = {"optim": {"sparse_embedding": False},  # added in 0.1 with default false
                 "model": {"ngram_order": 0}}  # added with the n-gram bag, off until then


def from_saved_dict(raw: Any, source: str) -> Config:
    """A Config saved in a checkpoint; keys it lacks keep the meaning they had when it was saved."""
    if isinstance(raw, dict):
        raw = {**raw}
        for section, old_defaults in _SAVED_BEFORE.items():
            if isinstance(raw.get(section), dict):
                raw[section] = {**old_defaults, **raw[section]}
    return from_dict(raw, source)


def from_dict(raw: Any, source: str = "config") -> Config:
    """Build a validated Config from a nested mapping (as read from YAML)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RnnclfError(
            f"{source}: the top level must be a mapping of sections "
            f"({', '.join(SECTIONS)}), not a {type(raw).__name__}"
        )
    sections: dict[str, Any] = {}
    for section_name, values in raw.items():
        if section_name not in SECTIONS:
            hint = _did_you_mean(str(section_name), list(SECTIONS))
            raise RnnclfError(
                f"{source}: unknown section {str(section_name)!r}{hint}; "
                f"sections are {', '.join(SECTIONS)}"
            )
        section_type = SECTIONS[section_name]
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise RnnclfError(
                f"{source}: section '{section_name}' must be a mapping of key: value, "
                f"not a {type(values).__name__}"
            )
        table = _field_table(section_type)
        checked: dict[str, Any] = {}
        for key, value in values.items():
            dotted = f"{section_name}.{key}"
            if key not in table:
                hint = _did_you_mean(str(key), list(table))
                raise RnnclfError(
                    f"{source}: unknown key {dotted!r}{hint}; "
                    f"'{section_name}' takes {', '.join(table)}"
                )
            kind, meta = table[key]
            checked[key] = _coerce(dotted, value, kind, meta)
        sections[section_name] = section_type(**checked)
    config = Config(**sections)
    if not _DEVICE.fullmatch(config.train.device):
        raise RnnclfError(
            f"train.device: {config.train.device!r} is not allowed; use auto, cpu, cuda or cuda:N"
        )
    _check_data_fields(config.data)
    return config


def _check_data_fields(data: DataConfig) -> None:
    """Own-data column settings: at least one text field; numbers when there is no header."""
    if data.dataset == "ag_news":
        return
    names = [name.strip() for name in data.text_fields.split(",") if name.strip()]
    if not names:
        raise RnnclfError(f"data.text_fields: {data.text_fields!r} is not allowed; name the "
                          "text column(s), comma-separated (e.g. text or title,body)")
    if not data.label_field.strip():
        raise RnnclfError("data.label_field: '' is not allowed; name the label column")
    if data.dataset == "csv" and not data.header:
        for key, values in (("data.text_fields", names), ("data.label_field",
                                                          [data.label_field.strip()])):
            if not all(value.isdigit() for value in values):
                raise RnnclfError(f"{key}: {', '.join(values)!r} is not allowed with "
                                  "data.header=false; give 0-based column numbers (e.g. 0 or 1,2)")


def parse_override(text: str) -> tuple[str, str, str]:
    """'model.cell=lstm' -> ('model', 'cell', 'lstm')."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or key.count(".") != 1 or not all(key.split(".")):
        raise RnnclfError(
            f"override {text!r} is not of the form section.key=value (e.g. model.cell=lstm)"
        )
    section, name = key.split(".")
    return section, name, value


def _override_value(raw_value: str, kind: type | None) -> Any:
    """Override values are YAML scalars, except for text fields, which keep what was typed."""
    if kind is str:
        return raw_value
    try:
        return yaml.safe_load(raw_value) if raw_value.strip() else raw_value
    except yaml.YAMLError:
        return raw_value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Merge `section.key=value` strings into a raw config mapping (validated later)."""
    merged = {name: dict(values) if isinstance(values, dict) else values
              for name, values in raw.items()}
    for text in overrides:
        section, name, raw_value = parse_override(text)
        section_type = SECTIONS.get(section)
        kind = _field_table(section_type).get(name, (None, {}))[0] if section_type else None
        target = merged.setdefault(section, {})
        if target is None:  # `model:` with nothing under it in the YAML
            target = merged[section] = {}
        if not isinstance(target, dict):
            raise RnnclfError(f"section '{section}' must be a mapping of key: value, not a "
                              f"{type(target).__name__}; fix the config file")
        target[name] = _override_value(raw_value, kind)
    return merged


def read_yaml(path: Path) -> Any:
    if not path.exists():
        raise RnnclfError(f"config file {path} does not exist; check the path (shipped: configs/)")
    if path.is_dir():
        raise RnnclfError(f"config path {path} is a folder; give a .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RnnclfError(f"cannot read config file {path}: {error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise RnnclfError(f"{path}: invalid YAML{where}: {problem}; fix the file") from None


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file (or the defaults) -> overrides -> validated Config, with a run name filled in."""
    raw = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        from_dict(raw, source)  # raises the "must be a mapping" error
    config = from_dict(apply_overrides(raw, overrides or []), source)
    if not config.train.name:
        config.train.name = path.stem if path is not None else "default"
    return config


def default_runs_dir() -> Path:
    """Where runs go when train.runs_dir is empty, and where eval/predict look for them."""
    return Path(os.environ.get("RNNCLF_RUNS_DIR") or "runs").expanduser()


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def describe() -> str:
    """Every field with its default and meaning, for the README and `--help`."""
    lines = []
    for section, section_type in SECTIONS.items():
        lines.append(f"{section}:")
        for name, (_, meta) in _field_table(section_type).items():
            default = getattr(section_type(), name)
            lines.append(f"  {name}: {default!r}  # {meta['help']}")
    return "\n".join(lines)
