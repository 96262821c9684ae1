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
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.ensemble import EnsembleClassifier
from rnnclf.runs.atomic import atomic_write_bytes, write_json
from rnnclf.runs.checkpoint import LoadedModel, load_model

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
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


def metadata(loaded: LoadedModel, model_file: str, export_format: str) -> dict[str, Any]:
    """What a program needs to turn text into the exported model's inputs and read its outputs."""
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


def default_output(checkpoint: Path, export_format: str) -> Path:
    return checkpoint.with_name(checkpoint.stem + SUFFIXES[export_format])


def export_checkpoint(checkpoint: Path, export_format: str, output: Path | None = None
                      ) -> tuple[Path, Path]:
    """Write the model file and `<model file>.json`; returns both paths."""
    if export_format not in FORMATS:
        raise RnnclfError(f"--format {export_format!r} is not allowed; use onnx or torchscript")
    loaded = load_model(checkpoint, "cpu", reference_path=True)
    output = Path(output) if output is not None else default_output(checkpoint, export_format)
    if output.is_dir():
        raise RnnclfError(f"--out {output} is a folder; give a file name")
    if not output.parent.is_dir():
        raise RnnclfError(f"folder {output.parent} does not exist; create it or choose another "
                          "--out")
    module = Exported(loaded.model, loaded.config.data.max_length,
                      loaded.config.data.multi_label).eval()
    with torch.no_grad():
        if export_format == "onnx":
            payload = _onnx_bytes(module, len(loaded.vocab))
        else:
            payload = _torchscript_bytes(module, len(loaded.vocab))
    atomic_write_bytes(output, lambda handle: handle.write(payload))
    info_path = output.with_name(output.name + ".json")
    write_json(info_path, metadata(loaded, output.name, export_format))
    return output, info_path
