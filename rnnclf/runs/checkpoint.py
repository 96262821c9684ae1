"""One self-contained checkpoint file of plain data, saved atomically, loaded weights_only."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnclf import __version__
from rnnclf.accel.backend import select_backend
from rnnclf.config import Config, from_saved_dict
from rnnclf.data.text import Vocab
from rnnclf.errors import RnnclfError
from rnnclf.models.build import build_classifier
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.ensemble import EnsembleClassifier
from rnnclf.models.int8 import dequantize_state
from rnnclf.runs.atomic import atomic_torch_save

FORMAT = "rnnclf-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("config", "vocab", "label_names")
# The weights: fp32 as trained, or int8 (`rnnclf export --format checkpoint --quantize int8`).
STATE_KEYS = ("model_state", "model_state_int8")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """`state` holds tensors, numbers, strings, lists and dicts only (never modules)."""
    atomic_torch_save({"format": FORMAT, "format_version": FORMAT_VERSION,
                       "rnnclf_version": __version__, **state}, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects; one-line error for anything else."""
    path = Path(path)
    if not path.exists():
        raise RnnclfError(f"checkpoint {path} does not exist; give the path of a best.pt or "
                          "last.pt written by `rnnclf train`")
    if path.is_dir():
        raise RnnclfError(f"checkpoint {path} is a folder; give runs/<name>/best.pt")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles; the error says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for torn, empty or foreign files
        # torch's own texts for these ("174812789", "EOFError", zip internals) mean nothing to
        # a user; what matters is which of the three cases it is.
        text = str(error)
        if any(sign in text for sign in ("Unsupported global", "Unsupported class",
                                         "unrecognized function")):
            reason = "it holds pickled objects other than plain data (refused for safety)"
        elif path.stat().st_size == 0:
            reason = "the file is empty"
        else:
            reason = "the file is truncated, damaged or not written by torch.save"
        raise RnnclfError(f"{path} is not a readable rnnclf checkpoint: {reason[:200]}; "
                          "point to a best.pt or last.pt written by `rnnclf train`") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RnnclfError(f"{path} is not an rnnclf checkpoint (no rnnclf format marker); "
                          "point to a best.pt or last.pt written by `rnnclf train`")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise RnnclfError(f"{path} has checkpoint format version {version!r}, this rnnclf reads "
                          f"version {FORMAT_VERSION}; use the rnnclf version that wrote it")
    missing = [key for key in REQUIRED if key not in payload]
    if not any(key in payload for key in STATE_KEYS):
        missing.append("model_state")
    if missing:
        raise RnnclfError(f"{path} is an incomplete checkpoint (missing {', '.join(missing)}); "
                          "use another checkpoint")
    return payload


@dataclass
class LoadedModel:
    model: RNNClassifier | EnsembleClassifier
    config: Config
    vocab: Vocab
    label_names: list[str]
    payload: dict[str, Any]
    quantization: str | None = None  # "int8": int8 weights (rnnclf/inference/quantize.py)


def load_model(path: Path, device: torch.device | str = "cpu", *,
               reference_path: bool = False) -> LoadedModel:
    """The checkpoint's model on `device`, in eval mode, with the backend `select_backend`
    picks for `device` (eval, predict); `reference_path` leaves it without one (export).
    An int8 checkpoint loads as the fp32 model of its int8 values (`quantization` "int8");
    rnnclf/inference/quantize.py then makes the int8 model of it."""
    payload = load_checkpoint(path)
    if payload.get("language_model"):
        raise RnnclfError(f"{path} is a language model from `rnnclf pretrain`, not a classifier; "
                          f"train one from it (rnnclf train model.init_from={path}) and use that "
                          "run's best.pt")
    quantization = "int8" if "model_state_int8" in payload else None
    if quantization is not None and torch.device(device).type != "cpu":
        raise RnnclfError(f"{path} is an int8 checkpoint, which runs on the CPU only; use "
                          "--device cpu (or the fp32 best.pt)")
    try:
        config = from_saved_dict(payload["config"], source=f"{path} (saved config)")
    except RnnclfError as error:
        raise RnnclfError(f"{path} holds a config this rnnclf cannot use ({error}); use a "
                          "checkpoint written by this version") from None
    try:
        vocab = Vocab(list(payload["vocab"]))
        label_names = [str(name) for name in payload["label_names"]]
        backend = None if reference_path else select_backend(device)
        model = build_classifier(config, len(vocab), len(label_names), backend=backend)
        model.load_state_dict(payload["model_state"] if quantization is None
                              else dequantize_state(payload["model_state_int8"]))
    except RnnclfError:
        raise
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RnnclfError(f"{path} does not match the model it describes ({first_line[:160]}); "
                          "the file is damaged or was edited") from None
    model.to(device).eval()
    return LoadedModel(model, config, vocab, label_names, payload, quantization)


def newest_run_checkpoint(runs_dir: Path, name: str = "best.pt") -> Path:
    """`name` inside the most recently modified run folder under `runs_dir`.

    Runs trained side by side can finish within one file-system clock tick; equal times fall
    to the folder name, so the choice never depends on directory listing order."""
    candidates = sorted(runs_dir.glob(f"*/{name}"),
                        key=lambda p: (p.stat().st_mtime_ns, p.parent.name)) \
        if runs_dir.is_dir() else []
    if not candidates:
        raise RnnclfError(f"no run with a {name} under {runs_dir.resolve()}; train one first "
                          "(`rnnclf train`) or give a checkpoint path")
    return candidates[-1]
