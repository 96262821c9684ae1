"""Time one language-model training step per output layer (pretrain.output) on real AG News
batches (the training split's first batches, its whole vocabulary): the figures of
docs/pretraining.md. Not part of the CLI.

    PYTHONPATH=. python scripts/lm_output_bench.py --data-dir /work/shared/data/ag_news \
        --train-file train_subset.csv --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnclf.config.schema import DataConfig
from rnnclf.data.batches import Batch, epoch_batches
from rnnclf.data.dataset import prepare_training_data
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.language_model import OUTPUTS, LanguageModel


def seconds_per_step(output: str, vocab: int, batches: list[Batch]) -> float:
    torch.manual_seed(0)
    encoder = RNNClassifier(vocab, 1, embedding_dim=50, hidden_size=128)
    model = LanguageModel(encoder, output)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    timings = []
    for batch in batches:  # the first two warm up
        started = time.perf_counter()
        loss = model(batch.tokens, batch.lengths) / model.predicted_tokens(batch.lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    return sorted(timings[2:])[len(timings[2:]) // 2]  # the median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--train-file", default="train.csv")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = prepare_training_data(DataConfig(dir=args.data_dir, train_file=args.train_file,
                                            download=False))
    batches = list(epoch_batches(data.train, args.batch, 256, seed=0, epoch=0))[:args.steps + 2]
    tokens = sum(int(batch.lengths.sum()) for batch in batches[2:])
    for output in OUTPUTS:
        seconds = seconds_per_step(output, len(data.vocab), batches)
        print(f"{output}: {seconds * 1000:.0f} ms per step (median of {args.steps}), vocabulary "
              f"{len(data.vocab)}, batch {args.batch} ({tokens / args.steps:.0f} tokens on "
              f"average), {args.threads} thread(s)")


if __name__ == "__main__":
    main()
