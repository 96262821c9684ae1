"""Would an exponential moving average (EMA) of the weights beat the trained weights themselves?

    python scripts/ema_probe.py --data-dir ../shared/data/ag_news --train-file train_subset.csv \
        --seed 0 --threads 1 [--decays 0.99,0.998,0.9995] [section.key=value ...]

Trains one run of the config (the built-in default unless overrides say otherwise) exactly as
`rnnclf train` does, keeps an EMA of every parameter per decay beside it (the training itself is
untouched, so the run is the same as without this script), prints each EMA's validation accuracy
after every epoch, and at the end the test accuracy of each final EMA, written as
RUN/ema<decay>.pt and scored by `rnnclf eval`. docs/accuracy.md has the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rnnclf.config.loading import load_config  # noqa: E402
from rnnclf.inference.scoring import evaluate  # noqa: E402
from rnnclf.runs.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from rnnclf.training.trainer import Trainer  # noqa: E402


@contextlib.contextmanager
def swapped_in(params: list[torch.Tensor], values: list[torch.Tensor]) -> Iterator[None]:
    """The model's parameters hold `values` inside the block, their own values again after."""
    saved = [param.detach().clone() for param in params]
    with torch.no_grad():
        torch._foreach_copy_(params, values)
    try:
        yield
    finally:
        with torch.no_grad():
            torch._foreach_copy_(params, saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--train-file", default="train.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--decays", default="0.99,0.998,0.9995")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    decays = [float(value) for value in args.decays.split(",")]
    config = load_config(None, [f"data.dir={args.data_dir}", f"data.train_file={args.train_file}",
                                f"train.seed={args.seed}", f"train.num_threads={args.threads}",
                                f"train.runs_dir={args.runs_dir}", f"train.name=ema_s{args.seed}",
                                "train.progress=false", *args.overrides])
    with contextlib.ExitStack() as claim:
        trainer = Trainer(config, log=print)
        trainer.setup(claim)
        params = list(trainer.model.parameters())
        averages = {decay: [param.detach().clone() for param in params] for decay in decays}
        optimizer_step, validate = trainer.optimizer.step, trainer._validate

        def step_then_average(*step_args, **step_kwargs):
            result = optimizer_step(*step_args, **step_kwargs)
            with torch.no_grad():
                for decay, average in averages.items():
                    torch._foreach_lerp_(average, [param.detach() for param in params], 1 - decay)
            return result

        def validate_each_average() -> dict:
            for decay, average in averages.items():
                with swapped_in(params, average):
                    scores = evaluate(trainer.model, trainer.data.val, 1024,
                                      config.data.max_length, trainer.device)
                print(f"epoch {trainer.progress.epoch + 1}, EMA {decay}: val acc "
                      f"{scores['accuracy'] * 100:.2f}")
            trainer.model.train()
            return validate()

        trainer.optimizer.step, trainer._validate = step_then_average, validate_each_average
        trainer.train()
        trainer.finish()
    payload = load_checkpoint(trainer.run_dir / "best.pt")
    for decay, average in averages.items():
        with swapped_in(params, average):
            payload["model_state"] = {name: tensor.clone()
                                      for name, tensor in trainer.model.state_dict().items()}
        path = trainer.run_dir / f"ema{decay}.pt"
        save_checkpoint(path, payload)
        report = subprocess.run([sys.executable, "-m", "rnnclf", "eval", str(path), "--json"],
                                capture_output=True, text=True)
        if report.returncode != 0:
            print(f"final EMA {decay}: written to {path}; eval failed: {report.stderr.strip()}")
            continue
        print(f"final EMA {decay}: test acc {json.loads(report.stdout)['accuracy'] * 100:.2f}")


if __name__ == "__main__":
    main()
