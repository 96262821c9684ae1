"""Int8 weights: per-row symmetric quantization, and the n-gram bag read from an int8 table.

Every weight matrix and table (2-D, floating point) is stored as int8 values and one fp32 scale
per row: w ~ q * scale, q = round(w / scale) in -127..127, scale = max |w_row| / 127. A zero row
(the padding rows of both tables) stays exactly zero, so padding still changes nothing.
Biases and other vectors stay fp32: they are a few kilobytes.

The state form (`quantize_state` / `dequantize_state`) is plain tensors (int8 and fp32 in nested
dicts), so an int8 checkpoint loads with torch.load(weights_only=True) like any other, and holds
no torch quantized tensor types (deprecated in torch 2.13).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rnnclf.models.ngrams import NgramBag, ngram_buckets_of

INT8_MAX = 127


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (R, C) float -> int8 values (R, C) and fp32 scales (R,), per row symmetric."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1) / INT8_MAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a zero row stays zero
    values = torch.round(weight / scale.unsqueeze(1)).clamp(-INT8_MAX, INT8_MAX)
    return values.to(torch.int8), scale


def dequantize_rows(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 values (R, C), scales (R,) -> fp32 (R, C)."""
    return values.float() * scale.unsqueeze(1)


def is_quantized_weight(tensor: torch.Tensor) -> bool:
    """Which tensors of a state dict become int8: the floating-point matrices and tables."""
    return tensor.is_floating_point() and tensor.dim() == 2


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """A model's fp32 state dict -> {"int8": values, "scale": per-row scales, "float": rest}."""
    quantized: dict[str, dict[str, torch.Tensor]] = {"int8": {}, "scale": {}, "float": {}}
    for name, tensor in state.items():
        if is_quantized_weight(tensor):
            quantized["int8"][name], quantized["scale"][name] = quantize_rows(tensor)
        else:
            quantized["float"][name] = tensor.detach().clone()
    return quantized


def dequantize_state(quantized: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`quantize_state`'s form -> an fp32 state dict holding the int8-rounded weights."""
    state = dict(quantized["float"])
    for name, values in quantized["int8"].items():
        state[name] = dequantize_rows(values, quantized["scale"][name])
    return state


def fake_quantize_(module: nn.Module) -> None:
    """Round every weight matrix of `module` to its int8 value, in place (still fp32)."""
    with torch.no_grad():
        for parameter in module.parameters():
            if is_quantized_weight(parameter):
                parameter.copy_(dequantize_rows(*quantize_rows(parameter)))


class Int8NgramBag(nn.Module):
    """NgramBag's inference forward over an int8 table: 4x less memory than the fp32 table.

    The table is kept in fbgemm's 8-bit rowwise layout (uint8 values, then an fp32 scale and
    offset per row), summed by `quantized::embedding_bag_byte_rowwise_offsets` without making
    the fp32 rows. Symmetric int8 q with scale s is stored as q + 128 with offset -128 s: the
    same numbers. CPU only; no training and no export (those read an fp32 NgramBag).
    """

    def __init__(self, bag: NgramBag, values: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.vocab_size = bag.vocab_size
        self.order = bag.order
        self.buckets = bag.buckets
        rows = values.size(0)
        packed = torch.empty(rows, values.size(1) + 8, dtype=torch.uint8)
        packed[:, :-8] = (values.to(torch.int16) + 128).to(torch.uint8)
        scale_and_offset = torch.stack([scale.float(), -128.0 * scale.float()], dim=1)
        packed[:, -8:] = scale_and_offset.contiguous().view(torch.uint8).view(rows, 8)
        self.register_buffer("packed", packed)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows = ngram_buckets_of(tokens, lengths, self.order, self.buckets, self.vocab_size)
        counts = (rows > 0).sum(dim=1, keepdim=True).clamp_min(1)  # (B, 1)
        batch, width = rows.shape
        offsets = torch.arange(0, batch * width, width, device=rows.device)
        # mode 0 = sum; row 0 ("no n-gram") is all zeros, so padding adds nothing.
        total = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
            self.packed, rows.reshape(-1), offsets, mode=0)
        return total / counts.to(total.dtype)
