"""Fine-tuning a classifier from a pretrained encoder (ULMFiT, Howard & Ruder 2018).

- `init_from_pretrained`: model.init_from copies the embedding and recurrent weights of a
  `rnnclf pretrain` run (or of any rnnclf checkpoint) into the new classifier, after checking the
  architecture, and maps the vocabulary when it differs.
- Layer groups, counted from the top: 0 is the output layer (and everything else not
  pretrained: pooling attention, n-gram bag), 1..L the recurrent layers top down, L+1 the
  embedding. `optim.discriminative_lr` divides the lr by its factor once per group down
  (`scaled_groups`); `optim.gradual_unfreeze` trains groups 0..e in epoch e+1
  (`unfreeze_for_epoch`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf.config.schema import Config, default_runs_dir
from rnnclf.data.text import Vocab
from rnnclf.errors import RnnclfError
from rnnclf.runs.checkpoint import load_checkpoint

# What must agree between the pretrained encoder and the classifier for its weights to fit.
ARCHITECTURE_KEYS = ("cell", "embedding_dim", "hidden_size", "num_layers", "bidirectional")
_RNN_LAYER = re.compile(r"^rnn\.\w+_l(\d+)(_reverse)?$")


def resolve_init_from(config: Config) -> Path:
    """model.init_from as a checkpoint file: a .pt file, a run folder (its best.pt), or a bare
    run name in train.runs_dir."""
    given = Path(config.model.init_from).expanduser()
    runs_dir = (Path(config.train.runs_dir).expanduser() if config.train.runs_dir
                else default_runs_dir())
    candidates = [given] if given.is_absolute() else [given, runs_dir / given]
    for candidate in candidates:
        if candidate.is_dir() and (candidate / "best.pt").is_file():
            return candidate / "best.pt"
        if candidate.is_file():
            return candidate
    where = " or ".join(str(candidate) for candidate in candidates)
    raise RnnclfError(f"model.init_from: no checkpoint or run folder with a best.pt at {where}; "
                      "run `rnnclf pretrain` first, or fix the path")


def check_architecture(saved: dict[str, Any], config: Config, source: Path) -> None:
    """One line naming the first architecture setting that differs."""
    for key in ARCHITECTURE_KEYS:
        wanted, found = getattr(config.model, key), saved.get(key)
        if found != wanted:
            raise RnnclfError(f"model.init_from: {source} was trained with model.{key}="
                              f"{found}, this model has model.{key}={wanted}; set "
                              f"model.{key}={found}, or pretrain with this architecture")


@torch.no_grad()
def copy_embedding(embedding: nn.Embedding, saved_weight: torch.Tensor, saved_vocab: list[str],
                   vocab: Vocab) -> int:
    """Rows of tokens both vocabularies hold; returns how many were copied."""
    saved_index = {token: index for index, token in enumerate(saved_vocab)}
    pairs = [(index, saved_index[token]) for index, token in enumerate(vocab.itos)
             if token in saved_index]
    if pairs:
        mine, theirs = (torch.tensor(side) for side in zip(*pairs, strict=True))
        embedding.weight[mine] = saved_weight[theirs].to(embedding.weight)
    return len(pairs)


def init_from_pretrained(model: nn.Module, config: Config, vocab: Vocab) -> str:
    """Load model.init_from's embedding and recurrent weights into `model` (an RNNClassifier);
    returns the log line saying where from and how the vocabulary matched."""
    path = resolve_init_from(config)
    payload = load_checkpoint(path)
    check_architecture(payload["config"].get("model", {}), config, path)
    state = payload["model_state"]
    rnn_state = {name[len("rnn."):]: value for name, value in state.items()
                 if name.startswith("rnn.")}
    try:
        model.rnn.load_state_dict(rnn_state)
    except RuntimeError as error:
        raise RnnclfError(f"model.init_from: {path} holds no matching recurrent weights "
                          f"({str(error).splitlines()[0][:120]}); point to a pretrain or train "
                          "run of this architecture") from None
    saved_vocab = list(payload["vocab"])
    copied = copy_embedding(model.embedding, state["embedding.weight"], saved_vocab, vocab)
    kind = "language model" if payload.get("language_model") else "classifier"
    if saved_vocab == vocab.itos:
        match = f"same vocabulary ({len(vocab):,} tokens)"
    else:
        match = (f"vocabulary mapped: {copied:,} of {len(vocab):,} tokens found in its "
                 f"{len(saved_vocab):,}; the other {len(vocab) - copied:,} keep their start")
    return f"init from {path} ({kind}): embedding and {config.model.cell} layers loaded, {match}"


def layer_depth(name: str, num_layers: int) -> int:
    """The layer group of parameter `name`, counted from the output layer (0) down."""
    if name.startswith("embedding."):
        return num_layers + 1
    layer = _RNN_LAYER.match(name)
    if layer is not None:
        return num_layers - int(layer.group(1))
    return 0


def scaled_groups(model: nn.Module, groups: list[dict[str, Any]], factor: float
                  ) -> list[dict[str, Any]]:
    """`groups` split by layer group, each with lr_scale = factor ** -depth (discriminative
    learning rates); the training loop multiplies the scheduled lr by it."""
    num_layers = model.rnn.num_layers
    depth_of = {id(parameter): layer_depth(name, num_layers)
                for name, parameter in model.named_parameters()}
    scaled: list[dict[str, Any]] = []
    for group in groups:
        by_depth: dict[int, list[nn.Parameter]] = {}
        for parameter in group["params"]:
            by_depth.setdefault(depth_of[id(parameter)], []).append(parameter)
        for depth, parameters in sorted(by_depth.items()):
            scaled.append({**group, "params": parameters, "lr_scale": factor ** -depth})
    return scaled


def unfreeze_for_epoch(model: nn.Module, epoch: int, keep_embedding_frozen: bool = False) -> str:
    """Gradual unfreezing: in (0-based) `epoch`, layer groups 0..epoch train, the rest are
    frozen; returns the log line."""
    num_layers = model.rnn.num_layers
    for name, parameter in model.named_parameters():
        depth = layer_depth(name, num_layers)
        frozen_anyway = keep_embedding_frozen and depth == num_layers + 1
        parameter.requires_grad_(depth <= epoch and not frozen_anyway)
    names = ["output layer", *(f"{model.rnn.mode.lower()} layer {num_layers - depth}"
                               for depth in range(1, num_layers + 1)), "embedding"]
    training = names[:epoch + 1]
    return f"gradual unfreezing, epoch {epoch + 1}: training {', '.join(training)}"
