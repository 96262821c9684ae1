"""Training and inference speed on a CUDA GPU: the measurement docs/benchmarks.md asks for.

    python scripts/gpu_bench.py [--device cuda] [--data PATH/train_subset.csv] [--json]
                                [--batch-sizes 256 1024] [--precisions fp32 bf16 fp16]

For the shipped default config (its BiGRU-128 plus the n-gram bag) and a 2-layer BiLSTM-256
(embedding 128, no bag), at each precision and batch size: training samples/s over real AG News
rows through rnnclf's own `train_one_epoch` (median of repeats, the GPU synchronised before the
clock stops), the seconds one 120,000-sample AG News epoch takes at that rate, the GPU's mean
utilisation while the timed steps ran (`nvidia-smi`, sampled every 0.1 s), its peak memory, and
inference samples/s (`predict_split`, eval batches of `train.eval_batch_size`). One run on a
fresh machine takes a few minutes; `--smoke` runs tiny models on CPU-sized data (the test suite
uses it so the script keeps working between GPU sessions).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import bench  # noqa: E402

from rnnclf.config.schema import Config  # noqa: E402
from rnnclf.data.dataset import prepare_training_data  # noqa: E402
from rnnclf.device import cpu_has_native_bf16, inference_autocast, resolve_device  # noqa: E402
from rnnclf.errors import RnnclfError  # noqa: E402
from rnnclf.inference.scoring import predict_split  # noqa: E402

AG_NEWS_TRAIN_ROWS = 120_000


def model_configs(smoke: bool) -> dict[str, Config]:
    """The shipped default, and the 2-layer BiLSTM-256 the GPU target names."""
    default = Config()
    bilstm = Config()
    bilstm.model.cell, bilstm.model.hidden_size, bilstm.model.num_layers = "lstm", 256, 2
    bilstm.model.bidirectional, bilstm.model.rnn_dropout = True, 0.2
    bilstm.model.ngram_order = 0
    bilstm.optim.sparse_embedding = False
    configs = {"default": default, "bilstm2-256": bilstm}
    for config in configs.values():
        config.train.progress = False
        if smoke:
            config.model.embedding_dim = config.model.hidden_size = 8
            config.model.ngram_buckets = 1024
    return configs


class UtilisationSampler:
    """Mean GPU utilisation (%) from `nvidia-smi` while a `with` block runs; None without it."""

    def __init__(self, device: torch.device) -> None:
        self.command = None
        if device.type == "cuda" and shutil.which("nvidia-smi"):
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.command = ["nvidia-smi", "--query-gpu=utilization.gpu",
                            "--format=csv,noheader,nounits", "-i", str(index)]
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        assert self.command is not None
        while not self._stop.is_set():
            result = subprocess.run(self.command, capture_output=True, text=True, check=False)
            if result.returncode == 0 and result.stdout.strip().isdigit():
                self.samples.append(float(result.stdout.strip()))
            self._stop.wait(0.1)

    def __enter__(self) -> UtilisationSampler:
        if self.command is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def measure(name: str, config: Config, precision: str, batch_size: int, data: Any,
            settings: bench.Settings, device: torch.device) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config.train.precision, config.train.batch_size = precision, batch_size
    row: dict[str, Any] = {"model": name, "precision": precision, "batch_size": batch_size}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runner = bench.RnnclfRunner(config, data, settings, seed=0, device=device)
    runner.warm_up()
    rates, utilisation = [], []
    for _ in range(settings.repeats):
        with UtilisationSampler(device) as sampler:
            seconds, samples, _ = runner.timed()
        rates.append(samples / seconds)
        if sampler.mean is not None:
            utilisation.append(sampler.mean)
    rate = statistics.median(rates)
    split = data.train.subset(torch.arange(min(settings.inference_rows, len(data.train))))
    with inference_autocast(precision, device):
        predict_split(runner.model, split, config.train.eval_batch_size, config.data.max_length,
                      device)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        predict_split(runner.model, split, config.train.eval_batch_size, config.data.max_length,
                      device)
        inference = len(split) / (time.perf_counter() - began)  # predict_split ends on the host
    row.update({
        "train_samples_s": rate, "seconds_per_120k_epoch": AG_NEWS_TRAIN_ROWS / rate,
        "gpu_utilisation_pct": statistics.median(utilisation) if utilisation else None,
        "peak_gpu_memory_mib": (torch.cuda.max_memory_allocated(device) / 2**20
                                if device.type == "cuda" else None),
        "inference_samples_s": inference,
    })
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        device = resolve_device(args.device)
    except RnnclfError:
        raise SystemExit(f"error: --device {args.device} is not available here "
                         f"(CUDA available: {torch.cuda.is_available()}); use --device cpu "
                         "or run on a GPU machine") from None
    workdir = Path(tempfile.mkdtemp(prefix="rnnclf-gpu-bench-"))
    train_path, test_path = (bench.smoke_data(workdir / "data") if args.smoke
                             else (args.data, args.data.parent / "test.csv"))
    if not train_path.is_file():
        raise SystemExit(f"error: {train_path} is missing; pass --data PATH/train_subset.csv "
                         "(test.csv beside it) or --smoke")
    settings = (bench.Settings(steps=2, warmup=1, repeats=1, inference_rows=64, matmul_size=0,
                               memory_steps=0)
                if args.smoke else bench.Settings(steps=args.steps, warmup=3,
                                                  repeats=args.repeats, inference_rows=8192,
                                                  matmul_size=0, memory_steps=0))
    data = prepare_training_data(bench.data_config(train_path, test_path, workdir / "cache").data)
    report: dict[str, Any] = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
        "torch": torch.__version__, "cuda": torch.version.cuda, "data": str(train_path),
        "rows": [],
    }
    for name, config in model_configs(args.smoke).items():
        for precision in args.precisions:
            if precision == "fp16" and device.type != "cuda":
                continue  # fp16 autocast has no CPU path (rnnclf refuses it there)
            if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
                continue  # rnnclf refuses bf16 training on such a CPU
            for batch_size in args.batch_sizes:
                # Enough rows for warm-up and timed steps at this batch size.
                needed = (settings.warmup + settings.steps) * batch_size
                if needed > len(data.train):
                    continue
                local = copy.copy(settings)
                local.batch_size = batch_size
                print(f"{name} {precision} batch {batch_size} ...", file=sys.stderr, flush=True)
                try:
                    report["rows"].append(measure(name, config, precision, batch_size, data,
                                                  local, device))
                except (RnnclfError, RuntimeError) as error:  # e.g. out of memory: report it
                    report["rows"].append({"model": name, "precision": precision,
                                           "batch_size": batch_size,
                                           "error": str(error).splitlines()[0][:200]})
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"rnnclf GPU bench: {report['device']}, torch {report['torch']} "
             f"(CUDA {report['cuda']}), data {report['data']}", "",
             f"{'model':<13}{'precision':>10}{'batch':>7}{'train/s':>10}{'s/120k':>9}"
             f"{'GPU util':>10}{'peak MiB':>10}{'infer/s':>10}"]
    for row in report["rows"]:
        head = f"{row['model']:<13}{row['precision']:>10}{row['batch_size']:>7}"
        if "error" in row:
            lines.append(f"{head}  error: {row['error']}")
            continue
        utilisation = row["gpu_utilisation_pct"]
        memory = row["peak_gpu_memory_mib"]
        lines.append(f"{head}{row['train_samples_s']:>10.0f}"
                     f"{row['seconds_per_120k_epoch']:>9.2f}"
                     f"{'-' if utilisation is None else f'{utilisation:.0f}%':>10}"
                     f"{'-' if memory is None else f'{memory:.0f}':>10}"
                     f"{row['inference_samples_s']:>10.0f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--data", type=Path, default=bench.DEFAULT_DATA)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"],
                        choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny models and data, any device")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        report = run(args)
    except RnnclfError as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps(report, indent=1) if args.json else format_report(report))


if __name__ == "__main__":
    main()
