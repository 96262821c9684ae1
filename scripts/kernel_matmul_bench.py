"""GFLOP/s of the C kernels' matmul (rnnclf/accel/_kernels.c `gemm`) vs torch.addmm, one thread.

    python scripts/kernel_matmul_bench.py --rounds 5

Shapes are the recurrent steps' hidden matmuls: M rows (texts), K = hidden size, N = 3H padded to
a multiple of 32. The two run interleaved (C, torch, C, torch, ...) so that a busy machine slows
both alike; each figure is the best of `--rounds` rounds, each round the best of `--calls` calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rnnclf.accel import kernels  # noqa: E402

SHAPES = [(m, 384, k) for k in (128, 256) for m in (32, 64, 256, 1024)]  # (M, N, K)


def best_seconds(call: Callable[[], object], calls: int) -> float:
    """The fastest of `calls` timed calls (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def seconds(m: int, n: int, k: int, rounds: int, calls: int) -> tuple[float, float]:
    """Best seconds of the C matmul and of torch.addmm for one (M, N, K), timed in turns."""
    a, b, bias = torch.randn(m, k), torch.randn(k, n), torch.randn(n)
    out = torch.empty(m, n)

    def c_matmul() -> None:
        kernels.KERNELS.matmul(m, n, k, a.data_ptr(), b.data_ptr(), bias.data_ptr(),
                               out.data_ptr())

    c_matmul()
    torch.testing.assert_close(out, torch.addmm(bias, a, b), rtol=1e-4, atol=1e-4)
    c_best = torch_best = float("inf")
    for _ in range(rounds):
        c_best = min(c_best, best_seconds(c_matmul, calls))
        torch_best = min(torch_best, best_seconds(lambda: torch.addmm(bias, a, b), calls))
    return c_best, torch_best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    if kernels.KERNELS is None:
        sys.exit("the C kernels are not built (or RNNCLF_KERNELS=0): nothing to measure")
    torch.set_num_threads(1)
    print(f"{'M x N x K':>16} {'C GFLOP/s':>10} {'torch GFLOP/s':>14} {'C / torch':>10}")
    for m, n, k in SHAPES:
        c_best, torch_best = seconds(m, n, k, args.rounds, args.calls)
        flops = 2 * m * n * k
        print(f"{f'{m} x {n} x {k}':>16} {flops / c_best / 1e9:10.1f} "
              f"{flops / torch_best / 1e9:14.1f} {torch_best / c_best:10.2f}")


if __name__ == "__main__":
    main()
