"""Export a checkpoint to ONNX or TorchScript, plus a JSON file with what is needed to feed it.

`pack_padded_sequence` does not export, so the exported module (`MaskedClassifier`) computes the
same logits from padded input with masks instead: each layer runs the forward direction on the
padded batch (padding comes after a text, so its states are exact up to the text's end), and the
backward direction on each text reversed within its own length (a gather), reversing the outputs
back afterwards. Pooling then ignores padded positions. Padded batches give the same
probabilities as rnnclf itself.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf import __version__
from rnnclf.data.text import PAD_INDEX, UNK_INDEX
from rnnclf.errors import RnnclfError
from rnnclf.models.classifier import EnsembleClassifier, RNNClassifier, log_mean_probability
from rnnclf.runs.atomic import atomic_write_bytes, write_json
from rnnclf.runs.checkpoint import LoadedModel, load_model

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
ONNX_OPSET = 17
INSTALL_HINT = "pip install 'rnnclf[export]'"


class _Direction(nn.Module):
    """One layer, one direction of an RNN or GRU, started from a zero state."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn
        self.hidden_size = rnn.hidden_size

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, T, I) -> outputs (B, T, H)."""
        # An explicit zero state sized from the input keeps the batch dimension dynamic in ONNX.
        initial = inputs.new_zeros(1, inputs.size(0), self.hidden_size)
        outputs, _ = self.rnn(inputs, initial)
        return outputs


class _LSTMDirection(_Direction):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        initial = inputs.new_zeros(1, inputs.size(0), self.hidden_size)
        outputs, _ = self.rnn(inputs, (initial, initial))
        return outputs


def _single_direction(rnn: nn.RNNBase, layer: int, reverse: bool) -> _Direction:
    """A one-layer, one-direction copy of `rnn`'s weights for `layer` (and `reverse`)."""
    input_size = rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional
                                                                       else 1)
    options: dict[str, Any] = {"num_layers": 1, "bias": rnn.bias, "batch_first": True}
    if isinstance(rnn, nn.RNN):
        options["nonlinearity"] = rnn.nonlinearity
    copy = type(rnn)(input_size, rnn.hidden_size, **options)
    suffix = "_reverse" if reverse else ""
    state = {name: getattr(rnn, f"{name[:-1]}{layer}{suffix}").detach().clone()
             for name in copy.state_dict()}  # weight_ih_l0 <- weight_ih_l{layer}{suffix}
    copy.load_state_dict(state)
    return _LSTMDirection(copy) if isinstance(rnn, nn.LSTM) else _Direction(copy)


def _take_time(states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """states (B, T, D), index (B, T) -> states[b, index[b, t]] as (B, T, D)."""
    return states.gather(1, index.unsqueeze(2).expand(-1, -1, states.size(2)))


class _Layer(nn.Module):
    """One layer: forward direction on the padded batch, backward on per-text reversed input."""

    def __init__(self, rnn: nn.RNNBase, layer: int) -> None:
        super().__init__()
        self.forward_direction = _single_direction(rnn, layer, False)
        self.backward_direction = (_single_direction(rnn, layer, True) if rnn.bidirectional
                                   else None)

    def forward(self, states: torch.Tensor, reverse_index: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, T, I) -> outputs (B, T, D) and the backward outputs (B, T, H)."""
        forward_states = self.forward_direction(states)  # (B, T, H)
        if self.backward_direction is None:
            return forward_states, forward_states
        reversed_outputs = self.backward_direction(_take_time(states, reverse_index))
        backward_states = _take_time(reversed_outputs, reverse_index)  # back in text order
        return torch.cat([forward_states, backward_states], dim=2), backward_states


class MaskedClassifier(nn.Module):
    """RNNClassifier's eval-mode logits and probabilities, without packed sequences."""

    def __init__(self, model: RNNClassifier, max_length: int) -> None:
        super().__init__()
        rnn = model.rnn
        if getattr(rnn, "proj_size", 0):
            raise RnnclfError("LSTM projections are not supported by rnnclf export")
        self.embedding = model.embedding
        self.classifier = model.classifier
        self.ngram_bag = model.ngram_bag
        self.pooling = model.pooling
        self.bidirectional = bool(rnn.bidirectional)
        self.hidden_size = rnn.hidden_size
        self.max_length = max_length
        self.layers = nn.ModuleList([_Layer(rnn, layer) for layer in range(rnn.num_layers)])

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) int64 0-padded, lengths (B,) int64 >= 1 -> logits, probabilities (B, C)."""
        tokens = tokens[:, :self.max_length]  # rnnclf truncates texts to data.max_length
        lengths = lengths.clamp(min=1, max=tokens.size(1))
        states = self.embedding(tokens)  # (B, T, E)
        positions = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)  # (1, T)
        last = lengths.unsqueeze(1)  # (B, 1)
        valid = positions < last  # (B, T)
        # Text b reversed within its length: position t reads position length-1-t; padding stays.
        reverse_index = torch.where(valid, last - 1 - positions, positions)  # (B, T)
        backward_states = states
        for layer in self.layers:
            states, backward_states = layer(states, reverse_index)
        if self.pooling == "last":
            # Forward: the state at each text's last token; backward: at its first token.
            final_forward = _take_time(states[:, :, :self.hidden_size], last - 1).squeeze(1)
            if self.bidirectional:
                pooled = torch.cat([final_forward, backward_states[:, 0]], dim=1)  # (B, 2H)
            else:
                pooled = final_forward
        elif self.pooling == "mean":
            masked = states * valid.unsqueeze(2).to(states.dtype)
            pooled = masked.sum(dim=1) / lengths.unsqueeze(1).to(states.dtype)
        else:
            pooled = states.masked_fill(~valid.unsqueeze(2), float("-inf")).amax(dim=1)
        if self.ngram_bag is not None:
            pooled = torch.cat([pooled, self.ngram_bag(tokens, lengths)], dim=1)
        logits = self.classifier(pooled)
        return logits, logits.softmax(dim=1)


class MaskedEnsemble(nn.Module):
    """An ensemble checkpoint's members, exported; their probabilities averaged."""

    def __init__(self, model: EnsembleClassifier, max_length: int) -> None:
        super().__init__()
        self.members = nn.ModuleList([MaskedClassifier(member, max_length)
                                      for member in model.members])

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same inputs and outputs as MaskedClassifier; logits are log mean probabilities."""
        member_logits: list[torch.Tensor] = []
        for member in self.members:  # a loop: TorchScript cannot comprehend a ModuleList
            member_logits.append(member(tokens, lengths)[0])
        logits = log_mean_probability(member_logits)
        return logits, logits.softmax(dim=1)


def exportable(model: RNNClassifier | EnsembleClassifier, max_length: int
               ) -> MaskedClassifier | MaskedEnsemble:
    if isinstance(model, EnsembleClassifier):
        return MaskedEnsemble(model, max_length)
    return MaskedClassifier(model, max_length)


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
                    "probabilities": "float32 (batch, classes), softmax of the logits"},
        "label_names": list(loaded.label_names),
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


def _torchscript_bytes(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def default_output(checkpoint: Path, export_format: str) -> Path:
    return checkpoint.with_name(checkpoint.stem + SUFFIXES[export_format])


def export_checkpoint(checkpoint: Path, export_format: str, output: Path | None = None
                      ) -> tuple[Path, Path]:
    """Write the model file and `<model file>.json`; returns both paths."""
    if export_format not in FORMATS:
        raise RnnclfError(f"--format {export_format!r} is not allowed; use onnx or torchscript")
    loaded = load_model(checkpoint, "cpu")
    output = Path(output) if output is not None else default_output(checkpoint, export_format)
    if output.is_dir():
        raise RnnclfError(f"--out {output} is a folder; give a file name")
    if not output.parent.is_dir():
        raise RnnclfError(f"folder {output.parent} does not exist; create it or choose another "
                          "--out")
    module = exportable(loaded.model, loaded.config.data.max_length).eval()
    with torch.no_grad():
        if export_format == "onnx":
            payload = _onnx_bytes(module, len(loaded.vocab))
        else:
            payload = _torchscript_bytes(module)
    atomic_write_bytes(output, lambda handle: handle.write(payload))
    info_path = output.with_name(output.name + ".json")
    write_json(info_path, metadata(loaded, output.name, export_format))
    return output, info_path


def read_metadata(path: Path) -> dict[str, Any]:
    """The JSON written beside an exported model."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
