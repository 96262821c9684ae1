"""Inference samples/s through `predict_split`, ATen's kernels vs rnnclf/accel/cpu_inference.py.

    python scripts/infer_ab.py --threads 1

For each model (untrained weights: speed does not depend on them) and eval batch size, the two
paths run interleaved (A B A B ...) over the first 8192 AG News training rows; medians of 3.
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

from rnnclf.accel.backend import CpuBackend  # noqa: E402
from rnnclf.config.schema import Config  # noqa: E402
from rnnclf.data.dataset import prepare_training_data  # noqa: E402
from rnnclf.inference.scoring import predict_split  # noqa: E402
from rnnclf.models.build import build_model  # noqa: E402

MODELS = {  # name -> model overrides on top of Config()
    "gru-bi": {},
    "lstm-bi": {"cell": "lstm"},
    "rnn-bi": {"cell": "rnn"},
    "gru-bi ngram2": {"ngram_order": 2, "ngram_dropout": 0.3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=REPO.parent / "shared" / "data" / "ag_news" / "train_subset.csv")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 1024, 2048])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = Config()
    config.data.dir, config.data.train_file = str(args.data.parent), args.data.name
    config.data.download = False
    config.data.cache_dir = tempfile.mkdtemp()
    data = prepare_training_data(config.data)
    split = data.train.subset(torch.arange(min(8192, len(data.train))))
    print("| model | eval batch | ATen kernels (samples/s) | cpu_inference (samples/s) | x |")
    print("|---|---|---|---|---|")
    for name, overrides in MODELS.items():
        model_config = Config().model
        for key, value in overrides.items():
            setattr(model_config, key, value)
        torch.manual_seed(0)
        model = build_model(model_config, len(data.vocab), 4)
        for batch_size in args.batch_sizes:
            rates: dict[bool, list[float]] = {False: [], True: []}
            for repeat in range(4):  # the first round warms up
                for lean in (False, True):
                    model.backend = CpuBackend(lean_inference=lean)
                    began = time.perf_counter()
                    predict_split(model, split, batch_size, config.data.max_length,
                                  torch.device("cpu"))
                    if repeat:
                        rates[lean].append(len(split) / (time.perf_counter() - began))
            aten, lean = (statistics.median(rates[flag]) for flag in (False, True))
            print(f"| {name} | {batch_size} | {aten:.0f} | {lean:.0f} | {lean / aten:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
