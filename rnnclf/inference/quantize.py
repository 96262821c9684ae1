"""int8 inference (`--quantize int8`): weight-only int8, computed in fp32 on rnnclf's CPU path.

Why this route (docs/benchmarks.md, "int8 inference", has the figures):
- Nearly all of a default model's bytes are its two tables (the n-gram table alone is 16.8M of
  18.6M parameters); the recurrent layers are small but carry the time. int8 tables make the
  file and the resident model about 4x smaller, which is what fastText's `quantize` is for.
- torch's dynamic quantization (torch.ao.quantization.quantize_dynamic) warns that it is
  deprecated and due for removal, and so do the quantized tensor types it builds; it has no
  dynamic nn.RNN; its int8 GRU/LSTM run ATen's step loop, slower than rnnclf's fp32 C kernels.
- torchao's `quantize_` converts linear layers, not nn.GRU/LSTM/RNN; rnnclf's only nn.Linear
  is the small output layer.
- onnxruntime's quantizer only applies to an exported ONNX file: `rnnclf export --quantize int8
  --format onnx` uses it (rnnclf/inference/export.py); eval/predict/serve stay in torch.
So: every weight matrix and table is rounded to int8 with one fp32 scale per row
(rnnclf/models/int8.py); the recurrent and output layers run those values in fp32 through the
usual CPU backend (C kernels); the n-gram table stays int8 in memory and is summed by fbgemm's
8-bit rowwise embedding bag. An int8 checkpoint (`rnnclf export --format checkpoint --quantize
int8`) stores the int8 values and scales, so the file is about 4x smaller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rnnclf.errors import RnnclfError
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.ensemble import EnsembleClassifier
from rnnclf.models.int8 import Int8NgramBag, fake_quantize_, quantize_rows, quantize_state
from rnnclf.runs.checkpoint import LoadedModel, load_model

QUANTIZATIONS = ("int8",)
# Left out of an int8 checkpoint (format and version are written again by save_checkpoint).
DROPPED_KEYS = ("format", "format_version", "rnnclf_version", "model_state", "optimizer_state",
                "scaler_state", "rng")
INT8_SCHEME = {
    "scheme": "int8",
    "weights": "int8, symmetric, one fp32 scale per row (matrices and tables); biases fp32",
    "compute": "fp32 (the n-gram table is summed from int8 rows)",
}


def check_quantization(quantize: str | None, device: torch.device, precision: str) -> None:
    """One line for a `--quantize` that cannot run: unknown, off the CPU, or with autocast."""
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise RnnclfError(f"--quantize {quantize!r} is not allowed; use int8 (or leave it out)")
    if device.type != "cpu":
        raise RnnclfError(f"--quantize {quantize} runs on the CPU only; use --device cpu")
    if precision != "fp32":
        raise RnnclfError(f"--quantize {quantize} computes in fp32 around int8 weights; drop "
                          f"--precision {precision} (or drop --quantize)")


def quantize_model(model: RNNClassifier | EnsembleClassifier
                   ) -> RNNClassifier | EnsembleClassifier:
    """The int8 form of a loaded fp32 model (CPU, eval mode), made in place and returned:
    every weight matrix rounded to int8 (kept as fp32 values, so the CPU backend runs it) and
    the n-gram bag on an int8 table. Quantizing an int8 model again changes nothing."""
    members = list(model.members) if isinstance(model, EnsembleClassifier) else [model]
    for member in members:
        bag = member.ngram_bag
        if bag is not None and not isinstance(bag, Int8NgramBag):
            values, scale = quantize_rows(bag.table.weight)
            member.ngram_bag = Int8NgramBag(bag, values, scale)
        fake_quantize_(member)
    return model.eval()


def load_for_inference(checkpoint: Path, device: torch.device, precision: str = "fp32",
                       quantize: str | None = None) -> LoadedModel:
    """`load_model` for eval/predict/serve: with `quantize`, or from an int8 checkpoint, the
    model is `quantize_model`'s; `loaded.quantization` says which ("int8" or None)."""
    quantize = getattr(quantize, "value", quantize)  # the CLI's enum member, or its string
    check_quantization(quantize, device, precision)
    loaded = load_model(checkpoint, device)
    if loaded.quantization is not None:  # an int8 checkpoint is int8 whatever was asked
        check_quantization(loaded.quantization, device, precision)
    quantization = quantize or loaded.quantization
    if quantization is not None:
        loaded.model = quantize_model(loaded.model)
        loaded.quantization = quantization
    return loaded


def int8_checkpoint(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's data with its weights in int8 (`model_state_int8` in place of
    `model_state`, so an rnnclf that predates int8 refuses it instead of misreading it);
    optimizer state and RNG states are left out: an int8 model is for inference only."""
    if "model_state_int8" in payload:
        raise RnnclfError("this checkpoint is int8 already; export its fp32 best.pt instead")
    kept = {key: value for key, value in payload.items() if key not in DROPPED_KEYS}
    return {**kept, "model_state_int8": quantize_state(payload["model_state"]),
            "quantization": dict(INT8_SCHEME)}
