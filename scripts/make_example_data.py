"""Write the toy product-review CSVs under examples/data/ (synthetic, generated here; seeded).

    python scripts/make_example_data.py

Three sentiment classes (negative, neutral, positive) from templates with shared filler words,
so a model has to pick out the sentiment-bearing words. The files are committed; rerunning this
script reproduces them byte for byte.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

PRODUCTS = ["kettle", "headphones", "backpack", "desk lamp", "blender", "phone case", "tent",
            "keyboard", "coffee grinder", "running shoes", "umbrella", "water bottle"]
OPENERS = ["I bought this {p} last month.", "Got the {p} as a gift.", "Ordered the {p} online.",
           "We have used this {p} for a few weeks.", "My second {p} from this brand."]
FILLER = ["Shipping took four days.", "The box was plain cardboard.", "It comes in three colours.",
          "I use it most mornings.", "The manual is short.", "My partner uses it too."]
WORDS = {
    "positive": (["great", "excellent", "sturdy", "lovely", "reliable", "comfortable"],
                 ["Works perfectly.", "Would buy again!", "Highly recommend it.",
                  "Better than I expected.", "Five stars from me."]),
    "negative": (["awful", "flimsy", "useless", "disappointing", "cheap", "noisy"],
                 ["It broke within a week.", "Returned it for a refund.", "Do not buy this.",
                  "Worse than I expected.", "One star, sadly."]),
    "neutral": (["okay", "average", "decent", "ordinary", "acceptable", "standard"],
                ["It does the job.", "Nothing special.", "About what you pay for.",
                 "Neither good nor bad.", "Three stars."]),
}
TITLES = {"positive": ["Love it", "Great buy", "Really happy"],
          "negative": ["Not good", "Avoid", "Very unhappy"],
          "neutral": ["It's fine", "Middle of the road", "Does the job"]}


def review(rng: random.Random, label: str) -> tuple[str, str]:
    adjectives, verdicts = WORDS[label]
    product = rng.choice(PRODUCTS)
    parts = [rng.choice(OPENERS).format(p=product),
             f"The {product} feels {rng.choice(adjectives)} and looks {rng.choice(adjectives)}.",
             *rng.sample(FILLER, k=rng.randint(0, 2)), rng.choice(verdicts)]
    if rng.random() < 0.15:  # a few mixed signals so the task is not trivially separable
        other = rng.choice([name for name in WORDS if name != label])
        parts.insert(1, f"Some say it is {rng.choice(WORDS[other][0])}.")
    title_label = rng.choice(sorted(TITLES)) if rng.random() < 0.2 else label  # noisy titles
    return rng.choice(TITLES[title_label]), " ".join(parts)


def write(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "review", "sentiment"])
        for number in range(rows):
            label = rng.choice(sorted(WORDS))
            title, body = review(rng, label)
            writer.writerow([f"r{seed}-{number:04d}", title, body, label])


if __name__ == "__main__":
    folder = Path(__file__).resolve().parents[1] / "examples" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "reviews_train.csv", 400, seed=1)
    write(folder / "reviews_test.csv", 120, seed=2)
    print(f"wrote {folder}/reviews_train.csv and reviews_test.csv")
