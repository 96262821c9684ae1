"""rnnclf's C gate kernels (rnnclf/accel/_kernels.c), loaded with ctypes: `KERNELS`, or None.

One call runs a recurrent layer's whole time loop: each step's hidden matmul and gate math, where
PyTorch ops take two oneDNN calls and ~9 elementwise ops per step (rnnclf/accel/fused_gru.py,
rnnclf/accel/cpu_inference.py). The library is built at install time as an
optional extension (setup.py). Where it was not built (no C compiler), was built from an older
source, or `RNNCLF_KERNELS=0` is set, `KERNELS` is None and the callers run the same math as
ATen ops. Callers pass fp32, contiguous CPU tensors as `data_ptr()` integers (None for NULL).
"""

from __future__ import annotations

import bisect
import ctypes
import importlib.util
import itertools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

# Must equal rnnclf_kernels_version() in rnnclf/accel/_kernels.c.
VERSION = 6

_INT, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {
    # steps, batch, hidden, directions, d0, d1, row0, row1, padded, products, pad_before,
    # weight_hh_t, bias_hh, hidden_gates, states, rz, reset_hidden, n, outputs
    "gru_train_forward": [_INT] * 9 + [_PTR] * 10,
    # steps, batch, hidden, d0, d1, row0, row1, padded, grad_outputs, grad_time_stride,
    # grad_batch_stride, weight_hh, recurrent, carried, rz, reset_hidden, n, states, hidden_rows,
    # input_rows, bias_partial, bias_sums
    "gru_train_backward": [_INT] * 8 + [_PTR] + [_INT] * 2 + [_PTR] * 11,
    # gates_per_unit, t0, t1, batch, hidden, padded, row0, row1, active, gates, tokens,
    # weight_hh_t, bias_hh, hidden_gates, h, c, pooled, pool, states
    "recurrent_infer": [_INT] * 8 + [_PTR] * 9 + [_INT, _PTR],
    # tests: count, values, out / M, N, K, A, B, bias, C
    "sigmoid_array": [_INT, _PTR, _PTR],
    "tanh_array": [_INT, _PTR, _PTR],
    "matmul": [_INT] * 3 + [_PTR] * 4,
}


def _load() -> ctypes.CDLL | None:
    if os.environ.get("RNNCLF_KERNELS", "1") == "0":
        return None
    spec = importlib.util.find_spec("rnnclf.accel._kernels")
    if spec is None or not spec.origin:
        return None
    try:
        library = ctypes.CDLL(spec.origin)
        version = library.rnnclf_kernels_version
    except (OSError, AttributeError):
        return None
    version.restype = _INT
    if version() != VERSION:
        # One line on stderr, as rnnclf's CLI reports problems: rnnclf still works, slower.
        print(f"warning: {spec.origin} was built from an older rnnclf/accel/_kernels.c, so rnnclf runs "
              "without it (slower); rebuild it with `pip install -e .`", file=sys.stderr)
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


def padded_columns(matrix: torch.Tensor) -> torch.Tensor:
    """(..., K, N) -> (..., K, P), contiguous, zero columns added up to P, the next multiple of 32:
    the kernels' matmul works on 32-column panels."""
    columns = matrix.size(-1)
    padded = matrix.new_zeros(*matrix.shape[:-1], -(-columns // 32) * 32)
    padded[..., :columns] = matrix
    return padded


def address(tensor: torch.Tensor | None) -> int | None:
    """A tensor's data pointer for a kernel argument (None: NULL)."""
    return None if tensor is None else tensor.data_ptr()


def split_rows(work: list[float], parts: int) -> list[tuple[int, int]]:
    """Row ranges [row0, row1) over len(work) rows, at most `parts` of them, each with about the
    same total `work` (the rows' costs), cut at multiples of 8 (the kernels' matmul runs 8 rows
    at a time)."""
    count = len(work)
    prefix = list(itertools.accumulate(work, initial=0.0))
    cuts = [0]
    for part in range(1, parts):
        row = bisect.bisect_left(prefix, prefix[-1] * part / parts)
        cut = round(row / 8) * 8
        if cuts[-1] < cut < count:
            cuts.append(cut)
    return list(zip(cuts, [*cuts[1:], count], strict=True))


def split_directions(directions: int, batch: int,
                     threads: int) -> list[tuple[int, int, int, int]]:
    """(d0, d1, row0, row1) parts of a training layer for `threads` threads: each direction on
    threads of its own, each split further by rows where threads are left (rows cost the same:
    training runs every text over the batch's width)."""
    if threads <= 1:
        return [(0, directions, 0, batch)]
    per_direction = max(1, threads // directions)
    return [(d, d + 1, row0, row1) for d in range(directions)
            for row0, row1 in split_rows([1.0] * batch, per_direction)]


_POOL: ThreadPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()


def _forget_pool_after_fork() -> None:
    """A forked child inherits the pool object but none of its threads: tasks sent to it would
    wait forever, so the child starts a pool of its own."""
    global _POOL, _POOL_WORKERS, _POOL_LOCK
    _POOL, _POOL_WORKERS, _POOL_LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def run_parallel(tasks: list[Callable[[], object]]) -> None:
    """Runs the tasks at once, the first on this thread and the rest on a shared pool of
    threads. The kernels release the GIL (ctypes does for every call), so the work really runs
    side by side, on the cores torch would use (callers make at most torch.get_num_threads()
    tasks); an error in any task is raised here once all have stopped."""
    global _POOL, _POOL_WORKERS
    if len(tasks) == 1:
        tasks[0]()
        return
    with _POOL_LOCK:
        if _POOL is None or len(tasks) - 1 > _POOL_WORKERS:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL_WORKERS = len(tasks) - 1
            _POOL = ThreadPoolExecutor(max_workers=_POOL_WORKERS,
                                       thread_name_prefix="rnnclf-kernels")
        pool = _POOL
    futures = [pool.submit(task) for task in tasks[1:]]
    try:
        tasks[0]()
    finally:
        for future in futures:
            future.result()
