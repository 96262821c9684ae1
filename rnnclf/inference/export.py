"""Export a checkpoint to ONNX or TorchScript, plus a JSON file with what is needed to feed it.

The exported module is the model's own reference path (`RNNClassifier.forward` without a
backend): masked, over the padded batch, with nothing that export cannot trace. It truncates
texts to data.max_length and clamps lengths as rnnclf does, and returns logits and
probabilities. Padded batches give the same probabilities as rnnclf itself.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf import __version__
from rnnclf.data.text import PAD_INDEX, UNK_INDEX
from rnnclf.errors import RnnclfError
from rnnclf.inference.multilabel_metrics import checkpoint_thresholds
from rnnclf.inference.onnx_int8 import quantize_onnx
from rnnclf.inference.quantize import INT8_SCHEME, QUANTIZATIONS, int8_checkpoint
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.ensemble import EnsembleClassifier
from rnnclf.runs.atomic import atomic_write_bytes, write_json
from rnnclf.runs.checkpoint import LoadedModel, load_model, save_checkpoint

FORMATS = ("onnx", "torchscript", "checkpoint")  # checkpoint: only with --quantize int8
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "checkpoint": ".pt"}
ONNX_OPSET = 17
INSTALL_HINT = "pip install 'rnnclf[export]'"


class Exported(nn.Module):
    """A classifier or ensemble (without a backend) as exported: inputs as rnnclf feeds them."""

    def __init__(self, model: RNNClassifier | EnsembleClassifier, max_length: int,
                 multi_label: bool = False) -> None:
        super().__init__()
        self.model = model
        self.max_length = max_length
        self.multi_label = multi_label

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) int64 0-padded, lengths (B,) int64 >= 1 -> logits, probabilities (B, C);
        an ensemble's logits are log mean probabilities. Multi-label: sigmoid per label."""
        tokens = tokens[:, :self.max_length]  # rnnclf truncates texts to data.max_length
        lengths = lengths.clamp(min=1, max=tokens.size(1))
        logits = self.model(tokens, lengths)
        if self.multi_label:  # a setting of the model, not of the input: the trace keeps it
            return logits, logits.sigmoid()
        return logits, logits.softmax(dim=1)


def metadata(loaded: LoadedModel, model_file: str, export_format: str,
             quantization: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a program needs to turn text into the exported model's inputs and read its outputs;
    `quantization`: how an int8 export was made and checked (None: fp32)."""
    data = loaded.config.data
    return {
        "format": "rnnclf-export",
        "format_version": 1,
        "rnnclf_version": __version__,
        "export_format": export_format,
        "model_file": model_file,
        "inputs": {
            "tokens": "int64 (batch, time): token ids, padded with pad_index after each text",
            "lengths": "int64 (batch,): tokens per text, at least 1",
        },
        "outputs": {"logits": "float32 (batch, classes)",
                    "probabilities": "float32 (batch, classes), sigmoid of the logits (each "
                                     "label on its own; multi_label)" if data.multi_label else
                                     "float32 (batch, classes), softmax of the logits"},
        "label_names": list(loaded.label_names),
        # Multi-label: a label applies where its probability >= its threshold (tuned on the
        # validation split; 0.5 each when the checkpoint stores none).
        "multi_label": data.multi_label,
        "thresholds": checkpoint_thresholds(loaded.payload, len(loaded.label_names))
        if data.multi_label else None,
        "text": {
            "tokenizer": "basic_english",
            "tokenizer_note": "torchtext basic_english: lowercase; ' -> \" '  \"; drop \"; "
                              "<br /> -> space; pad . , ( ) ! ? with spaces; ; : -> space; "
                              "split on whitespace",
            "clean": data.clean,
            "clean_note": "when true, AG News clean-up first (rnnclf.data.text.clean_ag_news): "
                          "\\ -> space, ' #39;' / ' quot;' -> HTML entities, unescape, drop tags",
            "max_length": data.max_length,
            "empty_text": "a text with no tokens is one unk_index token",
        },
        "pad_index": PAD_INDEX,
        "unk_index": UNK_INDEX,
        "vocab": list(loaded.vocab.itos),
        "model": dict(vars(loaded.config.model)),
        "ensemble": loaded.config.train.ensemble,  # > 1: logits are log mean probabilities
        "quantization": quantization,
    }


def _example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, max(3, vocab_size), (2, 5), generator=generator)
    lengths = torch.tensor([5, 3])
    tokens[1, 3:] = PAD_INDEX
    return tokens, lengths


def _onnx_bytes(module: nn.Module, vocab_size: int) -> bytes:
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail early with the install hint)
    except ImportError:
        raise RnnclfError(f"ONNX export needs the onnx package; {INSTALL_HINT}") from None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about RNN batch sizes and tracing
        torch.onnx.export(
            module, _example_inputs(vocab_size), buffer, dynamo=False,
            input_names=["tokens", "lengths"], output_names=["logits", "probabilities"],
            dynamic_axes={"tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                          "logits": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=ONNX_OPSET)
    return buffer.getvalue()


def _torchscript_bytes(module: nn.Module, vocab_size: int) -> bytes:
    """Traced, not scripted: TorchScript cannot compile the model's optional backend or its
    one-direction modules. Every branch of the reference forward depends on the model's
    settings, never on the inputs, so the trace holds all of it."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices, tracer chatter
        torch.jit.save(torch.jit.trace(module, _example_inputs(vocab_size)), buffer)
    return buffer.getvalue()


def default_output(checkpoint: Path, export_format: str, quantize: str | None = None) -> Path:
    infix = f".{quantize}" if quantize else ""
    return checkpoint.with_name(checkpoint.stem + infix + SUFFIXES[export_format])


def _check_request(export_format: str, quantize: str | None) -> None:
    if export_format not in FORMATS:
        raise RnnclfError(f"--format {export_format!r} is not allowed; use onnx or torchscript "
                          "(or checkpoint with --quantize int8)")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise RnnclfError(f"--quantize {quantize!r} is not allowed; use int8 (or leave it out)")
    if export_format == "checkpoint" and quantize is None:
        raise RnnclfError("--format checkpoint writes an int8 checkpoint; add --quantize int8 "
                          "(best.pt is the fp32 one)")
    if export_format == "torchscript" and quantize is not None:
        raise RnnclfError(f"--quantize {quantize} exports ONNX (onnxruntime's quantizer) or an "
                          "int8 checkpoint, not TorchScript; use --format onnx or checkpoint")


def export_checkpoint(checkpoint: Path, export_format: str, output: Path | None = None,
                      quantize: str | None = None) -> tuple[Path, Path]:
    """Write the model file and `<model file>.json`; returns both paths. `quantize` "int8":
    an int8 ONNX file (onnxruntime's dynamic quantizer, checked against the fp32 export) or
    an int8 checkpoint (rnnclf/inference/quantize.py)."""
    _check_request(export_format, quantize)
    loaded = load_model(checkpoint, "cpu", reference_path=True)
    output = (Path(output) if output is not None
              else default_output(checkpoint, export_format, quantize))
    if output.is_dir():
        raise RnnclfError(f"--out {output} is a folder; give a file name")
    if not output.parent.is_dir():
        raise RnnclfError(f"folder {output.parent} does not exist; create it or choose another "
                          "--out")
    module = Exported(loaded.model, loaded.config.data.max_length,
                      loaded.config.data.multi_label).eval()
    quantization = None
    if export_format == "checkpoint":
        save_checkpoint(output, int8_checkpoint(loaded.payload))
        quantization = dict(INT8_SCHEME)
    else:
        with torch.no_grad():
            if export_format == "onnx":
                payload = _onnx_bytes(module, len(loaded.vocab))
                if quantize is not None:
                    payload, quantization = quantize_onnx(payload, loaded)
            else:
                payload = _torchscript_bytes(module, len(loaded.vocab))
        atomic_write_bytes(output, lambda handle: handle.write(payload))
    info_path = output.with_name(output.name + ".json")
    write_json(info_path, metadata(loaded, output.name, export_format, quantization))
    return output, info_path
