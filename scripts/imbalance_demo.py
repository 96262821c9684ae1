"""Class weights on a generated 95/5 two-class set: minority recall with and without `balanced`.

    PYTHONPATH=. python scripts/imbalance_demo.py --workdir /tmp/imbalance            # the figures
    PYTHONPATH=. python scripts/imbalance_demo.py --workdir /tmp/imbalance --json     # as JSON

It writes a deterministic CSV set (train.csv, test.csv: columns text,label; labels `common` and
`rare`, 95% / 5% in both files), trains the same model twice, once with
`optim.class_weights=none` and once with `balanced`, evaluates both on test.csv and prints the
rare class's recall beside accuracy, macro-F1 and balanced accuracy (docs/imbalance.md).

The classes overlap on purpose. Every text is 12 made-up words; a `rare` text holds one cue word
(60%) or two (40%), and 15% of the `common` texts hold one cue word too. A text with one cue word
is then about 4 times likelier to be rare than its share says, yet still 5 times likelier to be
common: a model that learns the 95/5 prior calls it `common` (it finds only the two-cue rare
texts), one trained with balanced weights calls it `rare`.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOISE = [f"{onset}{vowel}{coda}" for onset in "bdfgklmnprst" for vowel in "aeiou"
         for coda in ("n", "m")][:60]  # 60 made-up filler words: ban, bam, ben, ...
CUES = ["alpha", "bravo", "delta", "kilo", "sierra", "tango"]
WORDS_PER_TEXT = 12
RARE_SHARE = 0.05
COMMON_WITH_CUE = 0.15  # share of `common` texts that hold one cue word
RARE_WITH_TWO_CUES = 0.4  # share of `rare` texts that hold two cue words (the others: one)


def cue_count(label: str, rng: random.Random) -> int:
    if label == "rare":
        return 2 if rng.random() < RARE_WITH_TWO_CUES else 1
    return 1 if rng.random() < COMMON_WITH_CUE else 0


def generated_rows(count: int, seed: int, words_per_text: int = WORDS_PER_TEXT
                   ) -> list[tuple[str, str]]:
    """`count` (text, label) rows, exactly round(RARE_SHARE * count) of them `rare`, shuffled."""
    rng = random.Random(seed)
    rare = round(RARE_SHARE * count)
    labels = ["rare"] * rare + ["common"] * (count - rare)
    rng.shuffle(labels)
    rows = []
    for label in labels:
        words = [rng.choice(NOISE) for _ in range(words_per_text)]
        for position in rng.sample(range(words_per_text), cue_count(label, rng)):
            words[position] = rng.choice(CUES)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def write_imbalanced_set(folder: Path, train_rows: int = 4000, test_rows: int = 4000,
                         seed: int = 0, words_per_text: int = WORDS_PER_TEXT) -> Path:
    """train.csv and test.csv in `folder` (their rows come from different seeds)."""
    write_csv(folder / "train.csv", generated_rows(train_rows, seed, words_per_text))
    write_csv(folder / "test.csv", generated_rows(test_rows, seed + 10_000, words_per_text))
    return folder


@dataclass(frozen=True)
class Setting:
    """What both runs share; only optim.class_weights differs between them."""

    size: int = 32  # embedding and hidden units
    epochs: int = 6
    select_by: str = "macro_f1"


def demo_overrides(data: Path, runs: Path, name: str, seed: int, setting: Setting) -> list[str]:
    """The run's `section.key=value` overrides."""
    size = setting.size
    return ["data.dataset=csv", f"data.dir={data}", "data.val_fraction=0.1",
            "model.pretrained_embeddings=", f"model.embedding_dim={size}",
            f"model.hidden_size={size}", "optim.lr=0.01", f"train.epochs={setting.epochs}",
            "train.batch_size=32", f"train.select_by={setting.select_by}",
            "train.early_stopping_patience=0", f"train.seed={seed}", "train.device=cpu",
            "train.num_threads=1", "train.progress=false", f"train.runs_dir={runs}",
            f"train.name={name}"]


def train_and_evaluate(data: Path, runs: Path, weights: str, seed: int, setting: Setting,
                       log: Any) -> dict[str, Any]:
    """One run with optim.class_weights=`weights`, evaluated on test.csv."""
    from rnnclf.config import load_config
    from rnnclf.inference.evaluate import evaluate_checkpoint
    from rnnclf.training.trainer import fit

    name = f"{weights}_seed{seed}"
    overrides = [*demo_overrides(data, runs, name, seed, setting),
                 f"optim.class_weights={weights}"]
    fit(load_config(None, overrides), overwrite=True, log=log)
    report = evaluate_checkpoint(runs / name / "best.pt", device_name="cpu", write=False)
    return {"class_weights": weights, "seed": seed,
            "rare_recall": report["per_class"]["rare"]["recall"],
            "rare_precision": report["per_class"]["rare"]["precision"],
            "common_recall": report["per_class"]["common"]["recall"],
            "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
            "balanced_accuracy": report["balanced_accuracy"],
            "command": "rnnclf train " + " ".join(overrides)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="data and runs go here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=4000)
    parser.add_argument("--words-per-text", type=int, default=WORDS_PER_TEXT)
    parser.add_argument("--size", type=int, default=Setting.size, help="embedding/hidden units")
    parser.add_argument("--epochs", type=int, default=Setting.epochs)
    parser.add_argument("--select-by", default=Setting.select_by)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    data = write_imbalanced_set(args.workdir / "data", args.train_rows, args.test_rows,
                                words_per_text=args.words_per_text)
    quiet = (lambda *_: None) if args.json else (lambda message: print(message, file=sys.stderr))
    setting = Setting(args.size, args.epochs, args.select_by)
    results = [train_and_evaluate(data, args.workdir / "runs", weights, seed, setting, quiet)
               for seed in args.seeds for weights in ("none", "balanced")]
    if args.json:
        print(json.dumps({"data": str(data), "results": results}))
        return
    print(f"{'weights':<9} {'seed':>4}  rare recall  rare precision  accuracy  macro-F1  "
          "balanced acc")
    for row in results:
        print(f"{row['class_weights']:<9} {row['seed']:>4}  {row['rare_recall']:11.4f}  "
              f"{row['rare_precision']:14.4f}  {row['accuracy']:8.4f}  {row['macro_f1']:8.4f}  "
              f"{row['balanced_accuracy']:12.4f}")


if __name__ == "__main__":
    main()
