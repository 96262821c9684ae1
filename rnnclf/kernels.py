"""rnnclf's C gate kernels (rnnclf/_kernels.c), loaded with ctypes: `KERNELS`, or None.

One call per time step does a recurrent layer's whole gate math, where ATen takes ~9 elementwise
ops (rnnclf/fused_gru.py, rnnclf/cpu_inference.py). The library is built at install time as an
optional extension (setup.py). Where it was not built (no C compiler), was built from an older
source, or `RNNCLF_KERNELS=0` is set, `KERNELS` is None and the callers run the same math as
ATen ops. Callers pass fp32, contiguous CPU tensors as `data_ptr()` integers (None for NULL).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import warnings

import torch

# Must equal rnnclf_kernels_version() in rnnclf/_kernels.c.
VERSION = 3

_INT, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {
    # steps, batch, hidden, directions, t, products, hidden_gates0, hidden_gates1, pad_before,
    # states, rz, reset_hidden, n, outputs
    "gru_train_forward_step": [_INT] * 5 + [_PTR] * 9,
    # steps, batch, hidden, directions, t, grad_outputs, grad_time_stride, grad_batch_stride,
    # carried, recurrent0, recurrent1, rz, reset_hidden, n, states, hidden_rows, input_rows,
    # bias_partial, bias_sums
    "gru_train_backward_step": [_INT] * 5 + [_PTR] + [_INT] * 2 + [_PTR] * 11,
    # rows, hidden, gates, tokens, hidden_gates, h, pooled, pool
    "gru_infer_step": [_INT] * 2 + [_PTR] * 5 + [_INT],
    # rows, hidden, gates, tokens, hidden_gates, h, c, pooled, pool
    "lstm_infer_step": [_INT] * 2 + [_PTR] * 6 + [_INT],
    # count, values, out (tests)
    "sigmoid_array": [_INT, _PTR, _PTR],
    "tanh_array": [_INT, _PTR, _PTR],
}


def _load() -> ctypes.CDLL | None:
    if os.environ.get("RNNCLF_KERNELS", "1") == "0":
        return None
    spec = importlib.util.find_spec("rnnclf._kernels")
    if spec is None or not spec.origin:
        return None
    try:
        library = ctypes.CDLL(spec.origin)
        version = library.rnnclf_kernels_version
    except (OSError, AttributeError):
        return None
    version.restype = _INT
    if version() != VERSION:
        warnings.warn(f"{spec.origin} was built from an older rnnclf/_kernels.c and is not used; "
                      "rebuild it with `pip install -e .`", stacklevel=2)
        return None
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, None
    return library


KERNELS = _load()


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels exist and take these tensors (fp32 on the CPU)."""
    return KERNELS is not None and all(t.dtype == torch.float32 and t.device.type == "cpu"
                                       for t in tensors)
