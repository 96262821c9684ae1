"""The two oneDNN entry points torch keeps private, each beside the public path it falls back to.

- `linear`: oneDNN's inner product, `torch.ops.mkldnn._linear_pointwise` (the op torch's own
  compiler emits for CPU linear layers); public fallback: `torch.addmm` / `@`.
- `has_native_bf16`: `torch.ops.mkldnn._is_mkldnn_bf16_supported`; public fallback:
  `torch.backends.cpu.get_cpu_capability()` == "AVX512".

tests/accel/test_onednn.py compares each private path with its public one, so a torch upgrade
that changes either shows up there first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _private_linear() -> Callable[..., torch.Tensor] | None:
    """oneDNN's inner product, or None where this torch lacks it or has no oneDNN.

    Why: torch's fp32 matmul calls MKL, which takes no AVX-512 path on AMD CPUs; oneDNN's
    kernel ran rnnclf's products faster there (docs/benchmarks.md).
    """
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


def public_has_native_bf16() -> bool:
    """Whether torch's own CPU dispatch picked AVX-512 here (AVX512-BW/VL/DQ), which is what
    oneDNN needs for its bf16 kernels on x86."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


def has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX-512 or AVX-NE-CONVERT on x86): without it
    oneDNN refuses some bf16 kernels (its inner product and LSTM among them)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return public_has_native_bf16()


LINEAR_POINTWISE = _private_linear()
# The dtypes oneDNN's inner product takes here: bf16 only with native bf16.
_ONEDNN_DTYPES = ((torch.float32, torch.bfloat16)
                  if LINEAR_POINTWISE is not None and has_native_bf16() else (torch.float32,))


def public_linear(inputs: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """`linear` through public ops only."""
    return inputs @ weight.t() if bias is None else torch.addmm(bias, inputs, weight.t())


def linear(inputs: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """inputs (N, K), weight (M, K), bias (M,) -> inputs @ weight^T + bias, (N, M): through
    oneDNN where it takes these inputs, else `public_linear`."""
    if LINEAR_POINTWISE is not None and inputs.dtype in _ONEDNN_DTYPES:
        return LINEAR_POINTWISE(inputs, weight, bias, "none", [], "")
    return public_linear(inputs, weight, bias)


def use_public_linear() -> None:
    """Route `linear` through public ops from now on, for long-running processes (`rnnclf
    serve`): oneDNN's inner product keeps about 1 MB per distinct input row count and never
    frees it, and a server sees ever-new row counts (docs/serving.md, "Memory")."""
    global LINEAR_POINTWISE
    LINEAR_POINTWISE = None
