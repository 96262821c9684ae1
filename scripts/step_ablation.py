"""Per-step CPU time of the default bi-GRU with each speed change switched on in turn.

    python scripts/step_ablation.py [--data PATH/train_subset.csv] [--threads 1]

CPU time (time.process_time) per training step over the same 22 bucketed AG News batches, median of
3 interleaved rounds, so a busy neighbour on a shared machine distorts it less than wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import rnnclf.accel.kernels  # noqa: E402
from rnnclf.accel.backend import CpuBackend  # noqa: E402
from rnnclf.config.schema import Config  # noqa: E402
from rnnclf.data.batches import epoch_batches  # noqa: E402
from rnnclf.data.dataset import prepare_training_data  # noqa: E402
from rnnclf.models.build import build_model  # noqa: E402
from rnnclf.training.optimizers import build_optimizer, clip_grad_norm  # noqa: E402

BUILT_KERNELS = rnnclf.accel.kernels.KERNELS

VARIANTS = {
    "no backend (the model's reference path), AdamW (foreach)": {
        "padded": False, "optimizer": "foreach", "fused_gru": False, "kernels": False},
    "+ padded CPU RNN path": {"padded": True, "optimizer": "foreach", "fused_gru": False,
                              "kernels": False},
    "+ fused AdamW": {"padded": True, "optimizer": "fused", "fused_gru": False, "kernels": False},
    "+ fused CPU GRU": {"padded": True, "optimizer": "fused", "fused_gru": True, "kernels": False},
    "+ optim.sparse_embedding=true": {"padded": True, "optimizer": "sparse", "fused_gru": True,
                                      "kernels": False},
    "+ C time loops (rnnclf/accel/_kernels.c; the default now)": {
        "padded": True, "optimizer": "sparse", "fused_gru": True, "kernels": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path,
                        default=REPO.parent / "shared" / "data" / "ag_news" / "train_subset.csv")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if BUILT_KERNELS is None:
        raise SystemExit("error: rnnclf's C kernels are not built here; run `pip install -e .` "
                         "with a C compiler (or drop the last row)")
    torch.set_num_threads(args.threads)
    config = Config()
    config.data.dir, config.data.train_file = str(args.data.parent), args.data.name
    config.data.download = False
    config.data.cache_dir = tempfile.mkdtemp(prefix="rnnclf-ablation-")
    data = prepare_training_data(config.data)
    batches = list(epoch_batches(data.train, 64, config.data.max_length, 0, 0))[:25]

    states = {}
    for name, variant in VARIANTS.items():
        torch.manual_seed(0)
        sparse = variant["optimizer"] == "sparse"
        backend = CpuBackend(fused_gru=variant["fused_gru"]) if variant["padded"] else None
        model = build_model(config.model, len(data.vocab), 4, sparse_embedding=sparse,
                            backend=backend).train()
        optimizer = (torch.optim.AdamW(model.parameters(), lr=2e-3, foreach=True)
                     if variant["optimizer"] == "foreach" else build_optimizer(config.optim, model))
        states[name] = (variant, model, optimizer)

    def run(name: str, steps: list) -> float:
        variant, model, optimizer = states[name]
        rnnclf.accel.kernels.KERNELS = BUILT_KERNELS if variant["kernels"] else None
        started = time.process_time()
        for batch in steps:
            loss = F.cross_entropy(model(batch.tokens, batch.lengths), batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad_norm(model.parameters(), 1.0)
            optimizer.step()
        return (time.process_time() - started) / len(steps) * 1e3

    for name in VARIANTS:
        run(name, batches[:3])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(3):
        for name in VARIANTS:
            times[name].append(run(name, batches[3:]))
    base = statistics.median(times[next(iter(VARIANTS))])
    print("| change | ms CPU per step | speed-up |\n|---|---|---|")
    for name in VARIANTS:
        milliseconds = statistics.median(times[name])
        print(f"| {name} | {milliseconds:.1f} | {base / milliseconds:.2f}x |")


if __name__ == "__main__":
    main()
