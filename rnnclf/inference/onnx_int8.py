"""An int8 ONNX file from the fp32 export: onnxruntime's dynamic quantizer, then a check.

onnxruntime.quantization.quantize_dynamic stores the weights of MatMul/Gemm and Gather (the
word and n-gram tables) as int8 and quantizes activations at run time; the recurrent GRU/RNN
nodes stay fp32 (onnxruntime quantizes LSTM nodes only). The int8 file is then run beside the
fp32 one on a fixed batch of token ids, and the agreement goes into the export's metadata.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnclf.data.text import PAD_INDEX
from rnnclf.errors import RnnclfError
from rnnclf.runs.checkpoint import LoadedModel

INSTALL_HINT = "pip install 'rnnclf[export]'"
CHECK_ROWS = 256  # texts of random token ids the int8 file is compared on
CHECK_MAX_LENGTH = 64


def quantize_onnx(fp32_bytes: bytes, loaded: LoadedModel) -> tuple[bytes, dict[str, Any]]:
    """fp32 ONNX bytes -> int8 ONNX bytes, and what the metadata records about them."""
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise RnnclfError(f"--quantize int8 for ONNX needs onnxruntime; {INSTALL_HINT}"
                          ) from None
    with tempfile.TemporaryDirectory(prefix="rnnclf-int8-") as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(fp32_bytes)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs advice to pre-process the model
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        int8_bytes = target.read_bytes()
    tokens, lengths = check_inputs(len(loaded.vocab), loaded.config.data.max_length)
    feeds = {"tokens": tokens.numpy(), "lengths": lengths.numpy()}
    fp32, int8 = (onnxruntime.InferenceSession(payload, providers=["CPUExecutionProvider"])
                  .run(["probabilities"], feeds)[0] for payload in (fp32_bytes, int8_bytes))
    check = {"rows": CHECK_ROWS, "inputs": "random token ids, seed 0",
             "same_label": float(np.mean(fp32.argmax(1) == int8.argmax(1))),
             "max_probability_change": float(np.abs(fp32 - int8).max())}
    return int8_bytes, {
        "scheme": "int8",
        "tool": f"onnxruntime {onnxruntime.__version__} quantization.quantize_dynamic "
                "(QInt8 weights; MatMul/Gemm and Gather int8, recurrent nodes fp32)",
        "check_against_fp32_export": check,
    }


def check_inputs(vocab_size: int, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed padded batch (CHECK_ROWS texts of random ids and lengths) for the comparison."""
    generator = torch.Generator().manual_seed(0)
    width = max(1, min(max_length, CHECK_MAX_LENGTH))
    lengths = torch.randint(1, width + 1, (CHECK_ROWS,), generator=generator)
    tokens = torch.randint(2, max(3, vocab_size), (CHECK_ROWS, width), generator=generator)
    tokens[torch.arange(width).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD_INDEX
    return tokens, lengths
