"""Time one language-model training step per output layer (pretrain.output), at a given
vocabulary size: the figures of docs/pretraining.md. Not part of the CLI.

    PYTHONPATH=. python scripts/lm_output_bench.py --vocab 33000 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.language_model import OUTPUTS, LanguageModel


def seconds_per_step(output: str, vocab: int, batch: int, length: int, steps: int) -> float:
    torch.manual_seed(0)
    encoder = RNNClassifier(vocab, 1, embedding_dim=50, hidden_size=128)
    model = LanguageModel(encoder, output)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(2, vocab, (batch, length))
    lengths = torch.full((batch,), length)
    timings = []
    for _ in range(steps + 2):  # the first two warm up
        started = time.perf_counter()
        loss = model(tokens, lengths) / model.predicted_tokens(lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    return sorted(timings[2:])[len(timings[2:]) // 2]  # the median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vocab", type=int, default=33000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=45)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for output in OUTPUTS:
        seconds = seconds_per_step(output, args.vocab, args.batch, args.length, args.steps)
        print(f"{output}: {seconds * 1000:.0f} ms per step (median of {args.steps}), vocab "
              f"{args.vocab}, batch {args.batch} x {args.length} tokens, {args.threads} thread(s)")


if __name__ == "__main__":
    main()
