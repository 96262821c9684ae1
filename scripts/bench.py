"""Speed of rnnclf on this machine: training, inference, preprocessing, memory, and a naive loop.

    python scripts/bench.py                 # full run (a few minutes on 2 cores)
    python scripts/bench.py --quick         # fewer steps and repeats
    python scripts/bench.py --json          # the same measurements as JSON on stdout
    python scripts/bench.py --smoke         # seconds, on generated data (for the tests)

Training throughput is measured through rnnclf's own `train_one_epoch` (bucketed batches through
the backend `select_backend` picks for the device, collated on a background thread, SparseAdam on
the embedding by default), on real AG News rows.
The naive reference below trains the same model sizes the way introductory RNN tutorials do:
random batches padded to their longest text, no packing, dense Adam over the whole embedding, and
Python lists turned into tensors every step. The two run interleaved (rnnclf, naive, rnnclf, ...)
and the ratio is the median over repeats, so a neighbour's load hits both alike.

FLOP counts are per real token (padding excluded): each recurrent layer and direction does
gates x (E*H + H*H) multiply-adds for the input projection and recurrence (gates: GRU 3, LSTM 4,
RNN 1), 2 FLOPs each; forward + backward = 3 x forward. "bound" is the fraction of this machine's
fp32 matmul rate (a large square matmul) that the training loop reaches.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rnnclf.accel.backend import CpuBackend, select_backend  # noqa: E402
from rnnclf.accel.onednn import has_native_bf16  # noqa: E402
from rnnclf.config.schema import Config  # noqa: E402
from rnnclf.data.dataset import (  # noqa: E402
    EncodedSplit,
    TrainingData,
    prepare_eval_split,
    prepare_training_data,
)
from rnnclf.data.word_vectors import load_pretrained  # noqa: E402
from rnnclf.inference.scoring import predict_split  # noqa: E402
from rnnclf.models.build import build_model, uses_sparse_embedding  # noqa: E402
from rnnclf.models.classifier import CELLS  # noqa: E402
from rnnclf.training.epoch import EpochRunner  # noqa: E402
from rnnclf.training.optimizers import build_optimizer  # noqa: E402
from rnnclf.training.state import Progress  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ag_news" / "train_subset.csv"
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
NUM_CLASSES = 4


@dataclass
class Settings:
    steps: int  # timed training steps per repeat
    warmup: int  # untimed steps before the first repeat
    repeats: int  # interleaved rnnclf / naive repeats (median reported)
    inference_rows: int
    matmul_size: int
    memory_steps: int
    embedding_dim: int = 128
    hidden_size: int = 128
    batch_size: int = 64


FULL = Settings(steps=24, warmup=4, repeats=5, inference_rows=8192, matmul_size=2048,
                memory_steps=100)
QUICK = Settings(steps=10, warmup=2, repeats=3, inference_rows=2048, matmul_size=2048,
                 memory_steps=30)
SMOKE = Settings(steps=2, warmup=1, repeats=1, inference_rows=64, matmul_size=128,
                 memory_steps=2, embedding_dim=8, hidden_size=8, batch_size=16)


# ---------------------------------------------------------------------------------------------
# The naive reference: how an introductory tutorial trains the same model.


class NaiveClassifier(nn.Module):
    """Embedding -> RNN over the padded batch (no packing) -> pooling over every position."""

    def __init__(self, vocab_size: int, config: Config) -> None:
        super().__init__()
        model = config.model
        self.pooling = model.pooling
        self.embedding = nn.Embedding(vocab_size, model.embedding_dim, padding_idx=0)
        self.rnn = CELLS[model.cell](model.embedding_dim, model.hidden_size,
                                     num_layers=model.num_layers, batch_first=True,
                                     bidirectional=model.bidirectional)
        self.dropout = nn.Dropout(model.dropout)
        directions = 2 if model.bidirectional else 1
        self.fc = nn.Linear(model.hidden_size * directions, NUM_CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        outputs, hidden = self.rnn(self.embedding(tokens))  # (B, T, D), padding included
        if self.pooling == "last":
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            pooled = torch.cat([hidden[-2], hidden[-1]], 1) if self.rnn.bidirectional \
                else hidden[-1]
        elif self.pooling == "mean":
            pooled = outputs.mean(dim=1)
        else:
            pooled = outputs.max(dim=1).values
        return self.fc(self.dropout(pooled))


def naive_train(model: NaiveClassifier, optimizer: torch.optim.Optimizer,
                texts: list[list[int]], labels: list[int], steps: int, batch_size: int,
                max_length: int, rng: random.Random) -> tuple[float, int, int]:
    """`steps` tutorial-style steps; returns (seconds, samples, real tokens)."""
    model.train()
    samples = tokens = 0
    started = time.perf_counter()
    for _ in range(steps):
        rows = rng.sample(range(len(texts)), batch_size)
        batch = [texts[i][:max_length] for i in rows]
        width = max(len(ids) for ids in batch)
        inputs = torch.tensor([ids + [0] * (width - len(ids)) for ids in batch])
        targets = torch.tensor([labels[i] for i in rows])
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()  # tutorials log every step
        samples += batch_size
        tokens += sum(len(ids) for ids in batch)
    return time.perf_counter() - started, samples, tokens


# ---------------------------------------------------------------------------------------------
# rnnclf itself.


class RnnclfRunner:
    """A model, optimizer and fixed rows, trained through rnnclf's own `train_one_epoch`."""

    def __init__(self, config: Config, data: TrainingData, settings: Settings, seed: int,
                 device: torch.device | None = None, backend: CpuBackend | None = None) -> None:
        """`backend`: default `select_backend(device)` (rnnclf's own choice)."""
        torch.manual_seed(seed)
        self.config, self.device = config, device or torch.device("cpu")
        backend = backend or select_backend(self.device)
        self.model = build_model(config.model, len(data.vocab), NUM_CLASSES,
                                 sparse_embedding=uses_sparse_embedding(config.optim),
                                 backend=backend).to(self.device)
        self.optimizer = build_optimizer(config.optim, self.model)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(data.train), generator=generator)
        rows = settings.batch_size
        self.warm_split = data.train.subset(order[:settings.warmup * rows])
        self.timed_split = data.train.subset(
            order[settings.warmup * rows:(settings.warmup + settings.steps) * rows])
        self.timed_tokens = int(self.timed_split.lengths.clamp(max=config.data.max_length).sum())

    def _epoch(self, split: EncodedSplit) -> None:
        runner = EpochRunner(self.model, self.optimizer, self.config, self.device)
        runner.train_one_epoch(split, Progress(), total_steps=1_000_000)
        if self.device.type == "cuda":  # the clock stops when the GPU is done, not at launch
            torch.cuda.synchronize(self.device)

    def warm_up(self) -> None:
        self._epoch(self.warm_split)

    def timed(self) -> tuple[float, int, int]:
        started = time.perf_counter()
        self._epoch(self.timed_split)
        return time.perf_counter() - started, len(self.timed_split), self.timed_tokens


def model_flops_per_token(config: Config) -> float:
    """Training FLOPs per real token: input projection + recurrence, forward + backward."""
    model = config.model
    directions = 2 if model.bidirectional else 1
    forward, input_size = 0.0, model.embedding_dim
    for _ in range(model.num_layers):
        multiply_adds = GATES[model.cell] * (input_size * model.hidden_size
                                             + model.hidden_size * model.hidden_size)
        forward += 2 * multiply_adds * directions
        input_size = model.hidden_size * directions
    return 3 * forward


# bf16 rows and columns only where the CPU has native bf16 (elsewhere autocast emulates it).
BF16_NATIVE = has_native_bf16()


def matmul_gflops(size: int, repeats: int, library: str = "torch",
                  dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a size^3 matmul: `torch` is torch.matmul (MKL on x86), `onednn` is the
    oneDNN inner product rnnclf's CPU kernels call (rnnclf/accel/onednn.py); on AMD CPUs MKL
    takes no AVX-512 path, so the two differ by ~2x there."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    if library == "torch":
        def multiply() -> torch.Tensor:
            return a @ b
    else:
        from rnnclf.accel.onednn import LINEAR_POINTWISE

        if LINEAR_POINTWISE is None:
            return float("nan")

        def multiply() -> torch.Tensor:
            return LINEAR_POINTWISE(a, b, None, "none", [], "")
    try:
        multiply()  # warm up the library
    except RuntimeError:  # oneDNN has no bf16 inner product on CPUs without native bf16
        return float("nan")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        multiply()
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times) / 1e9


# ---------------------------------------------------------------------------------------------
# Configurations, data, preprocessing, memory.


def bench_configs(settings: Settings) -> list[tuple[str, Config]]:
    """cell x direction at the given sizes, then the shipped defaults (when not already listed)."""
    configs: list[tuple[str, Config]] = []
    for cell in ("rnn", "lstm", "gru"):
        for bidirectional in (False, True):
            config = Config()
            config.model.cell, config.model.bidirectional = cell, bidirectional
            config.model.embedding_dim = settings.embedding_dim
            config.model.hidden_size = settings.hidden_size
            config.model.num_layers = 1
            config.model.ngram_order = 0  # the recurrent network alone, as the naive loop has it
            config.optim.sparse_embedding = False
            config.train.batch_size = settings.batch_size
            configs.append((f"{cell}-{'bi' if bidirectional else 'uni'}", config))
    default = Config()
    if settings is SMOKE:  # tiny sizes keep the smoke run quick
        default.model.embedding_dim = settings.embedding_dim
        default.model.hidden_size = settings.hidden_size
        default.train.batch_size = settings.batch_size
    for index, (name, config) in enumerate(configs):
        if config.model == default.model and config.train.batch_size == default.train.batch_size:
            configs[index] = (f"{name} (=default)", config)
            break
    else:
        configs.append(("default", default))
    sparse = copy.deepcopy(configs[5][1])  # bi-GRU with optim.sparse_embedding=true
    sparse.optim.sparse_embedding = True
    configs.append(("gru-bi sparse-emb", sparse))
    # train.precision=bf16 (CPU autocast; the bound columns stay fp32 rates, so read its
    # GFLOP/s against the bf16 matmul rate printed above).
    bf16_rows = ((5, "gru-bi bf16"), (len(configs) - 2, "default bf16")) if BF16_NATIVE else ()
    for index, name in bf16_rows:
        low = copy.deepcopy(configs[index][1])
        low.train.precision = "bf16"
        configs.append((name, low))
    if settings is SMOKE:
        default.model.ngram_buckets = 1024
    for _, config in configs:
        config.train.progress = False
    return configs


def data_config(train_path: Path, test_path: Path, cache_dir: Path) -> Config:
    config = Config()
    config.data.dir = str(train_path.parent)
    config.data.train_file = train_path.name
    config.data.test_file = test_path.name
    config.data.download = False
    config.data.cache_dir = str(cache_dir)
    return config


def preprocessing_seconds(train_path: Path, test_path: Path, cache_dir: Path,
                          cached_repeats: int = 3) -> dict[str, float]:
    """read + clean + tokenize + vocab + numericalize, from scratch and from the cache."""
    config = data_config(train_path, test_path, cache_dir)

    def prepare() -> None:
        data = prepare_training_data(config.data)
        prepare_eval_split(config.data, data.vocab, test_path)

    started = time.perf_counter()
    prepare()
    first = time.perf_counter() - started
    cached = []
    for _ in range(cached_repeats):
        started = time.perf_counter()
        prepare()
        cached.append(time.perf_counter() - started)
    return {"first_s": first, "cached_s": statistics.median(cached)}


def memory_child(args: argparse.Namespace) -> None:
    """Runs in a subprocess: preprocess (fresh cache), train the default config, evaluate."""
    settings = SMOKE if args.smoke else QUICK if args.quick else FULL
    config = Config()
    config.train.progress = False
    if args.smoke:
        config.model.embedding_dim = config.model.hidden_size = settings.embedding_dim
        config.model.pretrained_embeddings = ""
        config.train.batch_size = settings.batch_size
    cache = Path(tempfile.mkdtemp(dir=args.workdir))
    config.data = data_config(args.data, args.test_data, cache).data
    data = prepare_training_data(config.data)
    runner_settings = copy.copy(settings)
    runner_settings.steps = settings.memory_steps
    runner = RnnclfRunner(config, data, runner_settings, seed=0)
    if config.model.pretrained_embeddings:  # as `rnnclf train` does: the vectors' load counts
        load_pretrained(runner.model.embedding, config.model.pretrained_embeddings, data.vocab)
    runner.warm_up()
    runner.timed()
    predict_split(runner.model, data.val, config.train.eval_batch_size, config.data.max_length,
                  torch.device("cpu"))
    status = Path("/proc/self/status")
    high_water_kib = 0
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                high_water_kib = int(line.split()[1])
    print(json.dumps({"vm_hwm_kib": high_water_kib}))


def peak_memory_mib(args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child",
               "--data", str(args.data), "--test-data", str(args.test_data),
               "--workdir", str(args.workdir)]
    command += ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
    if args.threads:
        command += ["--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"memory child failed:\n{result.stderr[-2000:]}")
    child = json.loads(result.stdout.strip().splitlines()[-1])
    # ru_maxrss of a child counts the forked copy of this process before its exec (Linux
    # keeps the old image's high-water mark), so it reported the bench's own size, ~1.6 GiB,
    # not the training's ~1.1. The child's VmHWM starts at its exec; ru_maxrss is the fallback
    # where /proc is missing.
    max_rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    peak_kib = child["vm_hwm_kib"] or max_rss_kib
    return {"peak_rss_mib": peak_kib / 1024, "children_max_rss_mib": max_rss_kib / 1024}


def smoke_data(folder: Path) -> tuple[Path, Path]:
    """Tiny AG News-format files: 4 classes, each with its own words."""
    words = {1: "president election troops summit", 2: "football coach goal league",
             3: "shares profit bank markets", 4: "software internet chip google"}
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, count in (("train.csv", 400), ("test.csv", 80)):
        rows = []
        for index in range(count):
            label = index % 4 + 1
            pool = words[label].split() + ["the", "a", "of", "said", "new"]
            rows.append((str(label), " ".join(rng.choices(pool, k=4)),
                         " ".join(rng.choices(pool, k=rng.randint(5, 30))) + "."))
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
        paths.append(folder / name)
    return paths[0], paths[1]


# ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = SMOKE if args.smoke else QUICK if args.quick else copy.copy(FULL)
    if args.steps:
        settings.steps = args.steps
    if args.repeats:
        settings.repeats = args.repeats
    configs = bench_configs(settings)
    wanted = {name.strip() for name in args.rows.split(",") if name.strip()}
    unknown = wanted - {name for name, _ in configs}
    if unknown:  # before anything is measured
        raise SystemExit(f"error: no bench row named {', '.join(sorted(unknown))}; rows: "
                         f"{', '.join(name for name, _ in configs)}")
    load_before = os.getloadavg()
    started = time.perf_counter()
    report: dict[str, Any] = {
        "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "data": str(args.data), "test_data": str(args.test_data),
        "settings": vars(settings) | {"naive_steps": max(2, settings.steps // 3)},
        "load_average_before": load_before,
    }
    def log(text: str) -> None:  # progress on stderr; stdout holds only the table or JSON
        print(f"[{time.perf_counter() - started:5.0f} s] {text}", file=sys.stderr, flush=True)


    log("matmul bound ...")
    matmul_repeats = 7 if not args.smoke else 2
    gflops = matmul_gflops(settings.matmul_size, matmul_repeats)
    onednn_gflops = matmul_gflops(settings.matmul_size, matmul_repeats, "onednn")
    report["matmul"] = {
        "size": settings.matmul_size, "gflops": gflops, "onednn_fp32_gflops": onednn_gflops,
        "onednn_bf16_gflops": matmul_gflops(settings.matmul_size, matmul_repeats, "onednn",
                                            torch.bfloat16)}

    log("preprocessing ...")
    cache_dir = Path(tempfile.mkdtemp(dir=args.workdir))  # empty: the first run starts cold
    report["preprocessing"] = preprocessing_seconds(args.data, args.test_data, cache_dir)

    data = prepare_training_data(data_config(args.data, args.test_data, cache_dir).data)
    texts = [data.train.tokens[start:start + length].tolist()
             for start, length in zip(data.train.offsets.tolist(), data.train.lengths.tolist())]
    labels = data.train.labels.tolist()
    report["vocab_size"] = len(data.vocab)
    report["mean_tokens"] = float(data.train.lengths.float().mean())

    rows = []
    for name, config in configs:
        if wanted and name not in wanted:
            continue
        log(f"training {name} ...")
        runner = RnnclfRunner(config, data, settings, seed=0)
        torch.manual_seed(0)
        naive_model = NaiveClassifier(len(data.vocab), config)
        naive_optimizer = torch.optim.Adam(naive_model.parameters(), lr=config.optim.lr)
        rng = random.Random(0)
        runner.warm_up()
        naive_train(naive_model, naive_optimizer, texts, labels, settings.warmup,
                    settings.batch_size, config.data.max_length, rng)
        # The naive loop is slow; fewer of its steps give its per-sample rate just as well.
        naive_steps = max(2, settings.steps // 3)
        ours, naive, ratios = [], [], []
        for _ in range(settings.repeats):  # interleaved, so both see the same machine state
            seconds, samples, tokens = runner.timed()
            ours.append((samples / seconds, tokens / seconds))
            seconds, samples, naive_tokens = naive_train(
                naive_model, naive_optimizer, texts, labels, naive_steps,
                settings.batch_size, config.data.max_length, rng)
            naive.append((samples / seconds, naive_tokens / seconds))
            ratios.append(ours[-1][0] / naive[-1][0])
        train_samples = statistics.median(rate for rate, _ in ours)
        train_tokens = statistics.median(rate for _, rate in ours)
        flops = model_flops_per_token(config)

        inference_split = data.train.subset(torch.arange(min(settings.inference_rows,
                                                             len(data.train))))
        # fp32 (the default) and `--precision bf16`, interleaved.
        inference: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(max(2, settings.repeats // 2)):
            for low in (False, True) if BF16_NATIVE else (False,):
                began = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                    predict_split(runner.model, inference_split, config.train.eval_batch_size,
                                  config.data.max_length, torch.device("cpu"))
                inference[low].append(len(inference_split) / (time.perf_counter() - began))
        inference_rate = statistics.median(inference[False])
        inference_bf16 = statistics.median(inference[True]) if BF16_NATIVE else float("nan")
        rows.append({
            "name": name, "cell": config.model.cell, "bidirectional": config.model.bidirectional,
            "embedding_dim": config.model.embedding_dim, "hidden_size": config.model.hidden_size,
            "batch_size": config.train.batch_size,
            "sparse_embedding": uses_sparse_embedding(config.optim),
            "train_samples_s": train_samples, "train_tokens_s": train_tokens,
            "naive_samples_s": statistics.median(rate for rate, _ in naive),
            "naive_tokens_s": statistics.median(rate for _, rate in naive),
            "speedup_vs_naive": statistics.median(ratios),
            "speedup_repeats": ratios,
            "train_gflops": train_tokens * flops / 1e9,
            "fraction_of_matmul": train_tokens * flops / 1e9 / gflops,
            "fraction_of_onednn_matmul": train_tokens * flops / 1e9 / onednn_gflops,
            "inference_samples_s": inference_rate,
            "inference_over_train": inference_rate / train_samples,
            "inference_bf16_samples_s": inference_bf16,
            "inference_bf16_over_train": inference_bf16 / train_samples,
            "eval_batch_size": config.train.eval_batch_size,
        })
    report["training"] = rows

    log("peak memory (subprocess) ...")
    report["memory"] = peak_memory_mib(args)
    report["load_average_after"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - started
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"rnnclf bench ({report['mode']}): torch {report['torch']}, "
             f"{report['threads']} threads, {report['cpu_count']} CPUs, load average "
             f"{report['load_average_before'][0]:.2f} before / "
             f"{report['load_average_after'][0]:.2f} after, {report['seconds']:.0f} s",
             f"data {report['data']}: vocabulary {report['vocab_size']}, mean "
             f"{report['mean_tokens']:.1f} tokens/text",
             f"matmul {report['matmul']['size']}^3: fp32 torch.matmul "
             f"{report['matmul']['gflops']:.1f} GFLOP/s (\"bound\"), fp32 oneDNN "
             f"{report['matmul']['onednn_fp32_gflops']:.1f} (\"1dnn\"), bf16 oneDNN "
             f"{report['matmul']['onednn_bf16_gflops']:.1f}",
             "",
             f"{'model':<18}{'train/s':>9}{'tokens/s':>10}{'naive/s':>9}{'x naive':>9}"
             f"{'GFLOP/s':>9}{'bound':>7}{'1dnn':>6}{'infer/s':>10}{'x train':>9}"
             f"{'bf16/s':>9}{'x train':>9}"]
    for row in report["training"]:
        lines.append(f"{row['name']:<18}{row['train_samples_s']:>9.0f}{row['train_tokens_s']:>10.0f}"
                     f"{row['naive_samples_s']:>9.0f}{row['speedup_vs_naive']:>9.2f}"
                     f"{row['train_gflops']:>9.1f}{row['fraction_of_matmul']:>7.0%}"
                     f"{row['fraction_of_onednn_matmul']:>6.0%}"
                     f"{row['inference_samples_s']:>10.0f}{row['inference_over_train']:>9.1f}"
                     f"{row['inference_bf16_samples_s']:>9.0f}"
                     f"{row['inference_bf16_over_train']:>9.1f}")
    prep, memory = report["preprocessing"], report["memory"]
    lines += ["",
              f"preprocessing train+test: first run {prep['first_s']:.2f} s, "
              f"from cache {prep['cached_s']:.3f} s",
              f"peak resident memory, default config (preprocess + train + eval): "
              f"{memory['peak_rss_mib']:.0f} MiB"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="AG News train CSV")
    parser.add_argument("--test-data", type=Path, default=None,
                        help="AG News test CSV (default: test.csv next to --data)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long run on generated data and tiny models (for tests)")
    parser.add_argument("--steps", type=int, default=0, help="timed training steps per repeat")
    parser.add_argument("--repeats", type=int, default=0, help="interleaved repeats")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rows", default="",
                        help="comma-separated model rows to run (e.g. gru-bi,default; "
                             "default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif args.smoke:  # tiny matrices gain nothing from a second thread and suffer on busy CPUs
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="rnnclf-bench-") as scratch:
        if args.workdir is None:
            args.workdir = Path(scratch)
        if args.smoke and not args.memory_child:
            args.data, args.test_data = smoke_data(args.workdir / "smoke_data")
        if args.test_data is None:
            args.test_data = args.data.parent / "test.csv"
        if not args.data.is_file() or not args.test_data.is_file():
            raise SystemExit(f"error: {args.data} or {args.test_data} is missing; pass --data "
                             "PATH/train_subset.csv (test.csv beside it) or --smoke")
        if args.memory_child:
            memory_child(args)
            return
        report = run(args)
    print(json.dumps(report, indent=2) if args.json else format_report(report))


if __name__ == "__main__":
    main()
