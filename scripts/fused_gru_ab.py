"""Training speed with and without the fused CPU GRU, through bench.py's own rnnclf runner.

    python scripts/fused_gru_ab.py [--data PATH/train_subset.csv] [--threads 1] [--repeats 5]
                                   [--precision fp32|bf16]

For the bench's gru-bi and default rows: the same 24 random AG News batches trained by rnnclf's
`train_one_epoch`, with `CpuBackend(fused_gru=...)` off and on in turn (A B A B ...), on one model.
Prints the median samples per wall second and per CPU second of each, GFLOP/s counted as bench.py
counts them (per real token) and their share of the fp32 2048^3 matmul rate ("bound"), measured
before and after. `--precision bf16` trains both under CPU autocast (ATen's kernel in bf16
against the fused layer with bf16 matmuls).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import bench  # noqa: E402

from rnnclf.accel.backend import CpuBackend  # noqa: E402
from rnnclf.data.dataset import prepare_training_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=bench.DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(tempfile.mkdtemp(prefix="rnnclf-gru-ab-"))
    data = prepare_training_data(
        bench.data_config(args.data, args.data.parent / "test.csv", cache).data)
    settings = bench.Settings(steps=24, warmup=4, repeats=args.repeats, inference_rows=0,
                              matmul_size=0, memory_steps=0)
    configs = dict(bench.bench_configs(settings))
    matmul = [bench.matmul_gflops(2048, 7)]
    lines = []
    for name in ("gru-bi", "default"):
        config = configs[name]
        config.train.precision = args.precision
        runner = bench.RnnclfRunner(config, data, settings, seed=0)
        runner.warm_up()
        rates: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for _ in range(args.repeats):
            for fused in (False, True):
                runner.model.backend = CpuBackend(fused_gru=fused)
                cpu_started = time.process_time()
                seconds, samples, tokens = runner.timed()
                cpu_seconds = time.process_time() - cpu_started
                rates[fused].append((samples / seconds, samples / cpu_seconds, tokens / seconds))
        for fused in (False, True):
            wall, cpu, tokens_s = (statistics.median(column) for column in zip(*rates[fused]))
            gflops = tokens_s * bench.model_flops_per_token(config) / 1e9
            lines.append((name, "on" if fused else "off", wall, cpu, gflops))
    matmul.append(bench.matmul_gflops(2048, 7))
    print(f"fp32 matmul 2048^3: {matmul[0]:.1f} GFLOP/s before, {matmul[1]:.1f} after")
    print("| row | fused GRU | samples/s (wall) | samples per CPU second | GFLOP/s | bound |")
    print("|---|---|---|---|---|---|")
    for name, state, wall, cpu, gflops in lines:
        print(f"| {name} | {state} | {wall:.0f} | {cpu:.0f} | {gflops:.1f} "
              f"| {gflops / statistics.mean(matmul):.0%} |")


if __name__ == "__main__":
    main()
