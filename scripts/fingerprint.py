"""The behaviour fingerprint of a refactor: one fixed run whose numbers must not move.

    python scripts/fingerprint.py --pinned tests/fixtures/pinned_default.yaml --out /tmp/fp.json
    python scripts/fingerprint.py ... --compare /tmp/fp_before.json   # exit 1 on any difference

It trains the pinned config for 1 epoch on a fixed 6,000-row shuffled sample of
train_subset.csv (seed 0, 1 thread), evaluates on the full test split and runs `predict -k 4`,
all through the CLI, and writes every number that must stay identical: the metrics.jsonl lines
(less their wall-clock fields), the test metrics and the predicted probabilities.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLE_ROWS = 6000
TIMING_KEYS = {"seconds", "samples_per_s"}
TEXTS = ["Oil prices climb as OPEC cuts output",
         "The striker scored twice as the home side won the cup final",
         "New chip doubles battery life of laptops, researchers say",
         "Rebels and government troops clash near the capital"]


def write_sample(source: Path, folder: Path) -> None:
    """The first line of train_subset.csv is a row too (AG News files have no header)."""
    rows = source.read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(0).shuffle(rows)
    (folder / "train.csv").write_text("".join(rows[:SAMPLE_ROWS]), encoding="utf-8")
    shutil.copy(source.with_name("test.csv"), folder / "test.csv")


def rnnclf(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "rnnclf", *args], capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"rnnclf {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def fingerprint(pinned: Path, data: Path, work: Path) -> dict:
    write_sample(data, work)
    run = work / "runs" / "fp"
    rnnclf("train", str(pinned), f"data.dir={work}", "data.train_file=train.csv",
           f"data.cache_dir={work / 'cache'}", f"train.runs_dir={work / 'runs'}",
           "train.name=fp", "train.seed=0", "train.epochs=1", "train.num_threads=1",
           "train.progress=false")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    metrics = [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in metrics]
    test = json.loads(rnnclf("eval", str(run / "best.pt"), "--json"))
    for key in ("checkpoint", "data"):  # paths inside this temporary folder
        test.pop(key)
    predictions = [json.loads(line) for line in
                   rnnclf("predict", "-c", str(run / "best.pt"), "-k", "4", "--json",
                          *TEXTS).splitlines()]
    return {"metrics": metrics, "test": test, "predictions": predictions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pinned", type=Path, required=True, help="the pinned resolved config")
    parser.add_argument("--data", type=Path,
                        default=Path("../shared/data/ag_news/train_subset.csv"))
    parser.add_argument("--out", type=Path, help="write the fingerprint here (JSON)")
    parser.add_argument("--compare", type=Path, help="a fingerprint to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = fingerprint(args.pinned.resolve(), args.data.resolve(), Path(folder))
    for record in result["metrics"]:
        print("metrics:", json.dumps(record))
    print("test:", json.dumps({k: result["test"].get(k) for k in ("accuracy", "macro_f1")}))
    for prediction in result["predictions"]:
        print("predict:", json.dumps(prediction))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, sort_keys=True))
    if args.compare:
        before = json.loads(args.compare.read_text())
        added: set[str] = set()
        same = {key: before[key] == _as_before(before[key], result[key], added)
                for key in ("metrics", "test", "predictions")}
        print("identical:", json.dumps(same))
        if added:  # a new figure is no change of behaviour; every old one is compared
            print("new fields (not in the fingerprint compared with):", ", ".join(sorted(added)))
        if not all(same.values()):
            sys.exit(1)


def _as_before(before: object, after: object, added: set[str]) -> object:
    """`after` less the dict keys that `before` lacks (noted in `added`), at any depth."""
    if isinstance(before, dict) and isinstance(after, dict):
        added.update(str(key) for key in after if key not in before)
        return {key: _as_before(before[key], value, added) for key, value in after.items()
                if key in before}
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [_as_before(old, new, added) for old, new in zip(before, after)]
    return after


if __name__ == "__main__":
    main()
