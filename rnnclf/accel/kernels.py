"""rnnclf's C gate kernels (rnnclf/accel/_kernels.c), loaded with ctypes: `KERNELS`, or None.

One call runs a recurrent layer's whole time loop: each step's hidden matmul and gate math, where
PyTorch ops take two oneDNN calls and ~9 elementwise ops per step (rnnclf/accel/fused_gru.py,
rnnclf/accel/cpu_inference.py). The library is built at install time as an optional extension
(setup.py). Where it was not built (no C compiler), was built from another version of the source,
or `RNNCLF_KERNELS=0` is set, `KERNELS` is None and the callers run the same math as ATen ops.
torch.compile and torch.export see the kernels as the custom ops of rnnclf/accel/ops.py, which
check their tensors; this module is the raw layer below them.

Each kernel takes one struct of named arguments (`GruTrainForward`, `GruTrainBackward`,
`RecurrentInfer`), mirrored here as a ctypes.Structure. The C file describes its structs as text
(rnnclf_kernels_layout); `_load` compares that text with the mirrors and refuses a library that
differs, with one line on stderr: a stale build is never called with the wrong arguments, and no
version number is kept by hand.

ctypes, not a torch C++ extension (docs/architecture-accel.md has the longer version):
- the library is plain C with no torch headers: it builds with only a C compiler, in seconds,
  and no torch upgrade can break it (a C++ extension compiles against torch's C++ API
  and ABI, so each torch upgrade needs a rebuild that an editable install does not do);
- torch.compile and torch.export see the ops all the same: torch.library registers Python
  custom ops with schemas, checks, fake (meta) kernels and autograd (rnnclf/accel/ops.py);
- ctypes releases the GIL for each call, so row ranges and directions run on threads side by
  side (`run_parallel`);
- the cost: a Python call per layer (not per step) in front of each kernel, and an exported
  graph that needs Python and rnnclf to run (as any torch.library Python op does).
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import importlib.util
import itertools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

_INT, _PTR = ctypes.c_int64, ctypes.c_void_p


class KernelArguments(ctypes.Structure):
    """A kernel's struct of arguments, built from keywords: integers as ints, pointers as tensors
    (their data) or None (NULL). Every field must be named once: ctypes alone would take a
    misspelt keyword as a new attribute and leave the field 0."""

    def __init__(self, **values: int | torch.Tensor | None) -> None:
        names = [name for name, _ in self._fields_]
        if sorted(values) != sorted(names):
            missing, unknown = set(names) - set(values), set(values) - set(names)
            raise TypeError(f"{type(self).__name__}: missing {sorted(missing)}, "
                            f"unknown {sorted(unknown)}")
        super().__init__(**{name: value.data_ptr() if isinstance(value, torch.Tensor) else value
                            for name, value in values.items()})


def _fields(integers: str, pointers: str) -> list[tuple[str, type]]:
    return [(name, _INT) for name in integers.split()] + [(name, _PTR) for name in pointers.split()]


class GruTrainForward(KernelArguments):
    """gru_train_forward's arguments (layouts in rnnclf/accel/_kernels.c)."""

    _fields_ = _fields("steps batch hidden directions d0 d1 row0 row1 padded",
                       "products pad_before weight_hh_t bias_hh hidden_gates states rz "
                       "reset_hidden n outputs")


class GruTrainBackward(KernelArguments):
    """gru_train_backward's arguments; grad_outputs is read with the given time and batch
    strides (in floats)."""

    _fields_ = _fields("steps batch hidden d0 d1 row0 row1 padded grad_time_stride "
                       "grad_batch_stride",
                       "grad_outputs weight_hh recurrent carried rz reset_hidden n states "
                       "hidden_rows input_rows bias_partial bias_sums")


class RecurrentInfer(KernelArguments):
    """recurrent_infer's arguments (a GRU or LSTM layer's steps [t0, t1) for rows
    [row0, row1))."""

    _fields_ = _fields("gates_per_unit t0 t1 batch hidden padded row0 row1 pool",
                       "active gates tokens weight_hh_t bias_hh hidden_gates h c pooled states")


# The kernels taking a struct, by C name.
ARGUMENTS: dict[str, type[KernelArguments]] = {
    "gru_train_forward": GruTrainForward,
    "gru_train_backward": GruTrainBackward,
    "recurrent_infer": RecurrentInfer,
}
# Test helpers with a few plain arguments: count, values, out / M, N, K, A, B, bias, C.
_PLAIN_SIGNATURES = {
    "sigmoid_array": [_INT, _PTR, _PTR],
    "tanh_array": [_INT, _PTR, _PTR],
    "matmul": [_INT] * 3 + [_PTR] * 4,
}


def describe(arguments: type[KernelArguments]) -> list[tuple[str, str]]:
    """(name, "int64_t" or "pointer") per field, in order, as a struct's mirror declares it."""
    return [(name, "int64_t" if kind is _INT else "pointer") for name, kind in arguments._fields_]


def parse_layout(text: str) -> dict[str, list[tuple[str, str]]]:
    """rnnclf_kernels_layout()'s text ("name: type field; ..." per line) -> `describe`'s form."""
    layout = {}
    for line in text.strip().splitlines():
        kernel, _, fields = line.partition(":")
        declarations = [field.strip() for field in fields.split(";") if field.strip()]
        layout[kernel.strip()] = [
            (declaration.split()[-1], "pointer" if "*" in declaration else declaration.split()[0])
            for declaration in declarations]
    return layout


def _stale(origin: str) -> None:
    # One line on stderr, as rnnclf's CLI reports problems: rnnclf still works, slower.
    print(f"warning: {origin} was built from another version of rnnclf/accel/_kernels.c, so "
          "rnnclf runs without it (slower); rebuild it with `pip install -e .`", file=sys.stderr)


def _load() -> ctypes.CDLL | None:
    if os.environ.get("RNNCLF_KERNELS", "1") == "0":
        return None
    spec = importlib.util.find_spec("rnnclf.accel._kernels")
    if spec is None or not spec.origin:
        return None
    try:
        library = ctypes.CDLL(spec.origin)
    except OSError:
        return None
    try:
        layout_text = library.rnnclf_kernels_layout
    except AttributeError:  # built before the layout existed
        _stale(spec.origin)
        return None
    layout_text.restype = ctypes.c_char_p
    layout = parse_layout(layout_text().decode())
    if layout != {name: describe(arguments) for name, arguments in ARGUMENTS.items()}:
        _stale(spec.origin)
        return None
    for name, arguments in ARGUMENTS.items():
        function = getattr(library, name)
        function.argtypes, function.restype = [ctypes.POINTER(arguments)], None
    for name, argtypes in _PLAIN_SIGNATURES.items():
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
    same total `work` (the rows' costs), cut at multiples of 8 so that every part but the last
    runs the kernels' matmul in full row blocks (`gemm` in rnnclf/accel/_kernels.c): 8 rows at
    a time on AVX-512; on AVX2 6 rows at a time, then pairs, and 8k rows leave no lone row."""
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


def run(kernel: str, parts: list[KernelArguments]) -> None:
    """Calls the C function `kernel` once per struct of arguments, the parts side by side
    (`run_parallel`): each part covers rows (and directions) of its own."""
    function = getattr(KERNELS, kernel)
    run_parallel([functools.partial(function, arguments) for arguments in parts])
