"""What each member adds to an ensemble: val and test accuracy of each trained model alone and
of the ensemble of the first k (its members' probabilities averaged, as `train.ensemble` and
`train.ensemble_members` do), for k = 1..N in the order given.

    python scripts/ensemble_growth.py runs/a/best.pt runs/b/best.pt runs/c/best.pt

The checkpoints must share their data settings and vocabulary (runs trained on the same file
with the same data.* and model.pretrained_vocab). `--greedy` orders them instead by forward
selection on validation accuracy (test is only read, never used to choose). Prints a Markdown
table; runs on the CPU.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from rnnclf.data.dataset import locate_file, prepare_eval_split, prepare_training_data
from rnnclf.data.word_vectors import extra_vocabulary
from rnnclf.errors import RnnclfError
from rnnclf.inference.scoring import predict_split
from rnnclf.runs.checkpoint import load_model

Scores = tuple[torch.Tensor, torch.Tensor]  # log-probabilities (N, C), labels (N,)


def split_scores(checkpoint: Path, vocab: list[str] | None) -> tuple[Scores, Scores, list[str]]:
    """The checkpoint's log-probabilities on its validation split and on its test file."""
    loaded = load_model(checkpoint, "cpu")
    if vocab is not None and loaded.vocab.itos != vocab:
        raise RnnclfError(f"{checkpoint} has another vocabulary than the first checkpoint; "
                          "give runs trained with the same data settings")
    config = loaded.config
    data = prepare_training_data(config.data, extra_words=extra_vocabulary(config.model))
    test, _ = prepare_eval_split(config.data, loaded.vocab,
                                 locate_file(config.data, config.data.test_file),
                                 label_names=loaded.label_names)
    scores = []
    for split in (data.val, test):
        logits, labels = predict_split(loaded.model, split, config.train.eval_batch_size,
                                       config.data.max_length, torch.device("cpu"))
        scores.append((logits.log_softmax(1), labels))
    return scores[0], scores[1], loaded.vocab.itos


def accuracy(members: list[Scores]) -> float:
    """Accuracy (%) of the members' mean probability."""
    stacked = torch.stack([log_probabilities for log_probabilities, _ in members])
    mean = torch.logsumexp(stacked, dim=0) - math.log(len(members))
    return 100.0 * (mean.argmax(1) == members[0][1]).float().mean().item()


def greedy_order(val: list[Scores]) -> list[int]:
    """Forward selection: each next member is the one that lifts validation accuracy most."""
    order: list[int] = []
    while len(order) < len(val):
        rest = [index for index in range(len(val)) if index not in order]
        order.append(max(rest, key=lambda index: accuracy([val[i] for i in order + [index]])))
    return order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--greedy", action="store_true",
                        help="order the members by forward selection on validation accuracy")
    args = parser.parse_args()
    val, test, vocab = [], [], None
    for checkpoint in args.checkpoints:
        val_scores, test_scores, vocab = split_scores(checkpoint, vocab)
        val.append(val_scores)
        test.append(test_scores)
    order = greedy_order(val) if args.greedy else list(range(len(val)))
    print("| k | member added | val alone | test alone | ensemble val | ensemble test |")
    print("|---|---|---|---|---|---|")
    for k, index in enumerate(order, start=1):
        chosen = order[:k]
        print(f"| {k} | {args.checkpoints[index]} | {accuracy([val[index]]):.2f} | "
              f"{accuracy([test[index]]):.2f} | {accuracy([val[i] for i in chosen]):.2f} | "
              f"{accuracy([test[i] for i in chosen]):.2f} |")


if __name__ == "__main__":
    main()
