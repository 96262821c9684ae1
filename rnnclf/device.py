"""Which device to train on, and mixed-precision helpers."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext

import torch

from rnnclf.accel.onednn import has_native_bf16
from rnnclf.errors import RnnclfError

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")  # as train.device accepts (config/loading.py)


def resolve_device(name: str) -> torch.device:
    if not DEVICE_NAME.fullmatch(name):
        raise RnnclfError(f"device {name!r} is not allowed; use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RnnclfError(f"train.device={name} but CUDA is not available here; "
                              "use train.device=cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise RnnclfError(f"train.device={name} but only {torch.cuda.device_count()} CUDA "
                              "device(s) exist; pick another index")
    return torch.device(name)


def autocast_context(precision: str, device: torch.device) -> AbstractContextManager:
    """Mixed precision for the forward pass and loss; fp32 runs without autocast."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")


def inference_autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The arithmetic of eval/predict: fp32, or bf16/fp16 autocast (`--precision`).

    bf16 on a CPU with native bf16 dot products (AVX512-BF16, AMX) runs the recurrent matmuls
    faster, and predictions agreed with fp32 on nearly every AG News test row
    (docs/benchmarks.md); elsewhere PyTorch emulates the bf16 matmuls, slower than fp32. fp16
    has no fast CPU path, so it is CUDA only, as in training.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise RnnclfError(f"--precision {precision!r} is not allowed; use "
                          f"{', '.join(INFERENCE_PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise RnnclfError("--precision fp16 needs a CUDA device; use --precision bf16 or fp32 "
                          "on the CPU")
    return autocast_context(precision, device)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 here, as rnnclf/accel/onednn.py's `has_native_bf16` decides:
    torch's `mkldnn._is_mkldnn_bf16_supported`, which on x86 asks for AVX-512 (BW, VL, DQ) or
    AVX-NE-CONVERT, not for AVX512-BF16 or AMX; where torch lacks that op, whether torch's CPU
    dispatch picked AVX-512. Without it oneDNN refuses some bf16 kernels (its LSTM among them)."""
    return has_native_bf16()


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise RnnclfError("train.precision=bf16 needs a CPU with native bf16 (AVX-512 class, as "
                          "oneDNN reports it), which this one lacks; use train.precision=fp32")
    if precision != "fp16":
        return None
    if device.type != "cuda":
        raise RnnclfError("train.precision=fp16 needs a CUDA device; use train.precision=bf16 "
                          "or fp32 on the CPU")
    return torch.amp.GradScaler(device.type)
