"""Write the toy multi-label review set under examples/data/ (synthetic, generated here; seeded).

    python scripts/make_multilabel_example.py

Each review mentions some of four aspects (price, shipping, quality, service), each in its own
words, among filler sentences that name none; its labels are the aspects it mentions, as a JSON
list (possibly empty). The files are committed; rerunning this script reproduces them byte for
byte. Used by configs/example_multilabel.yaml.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ASPECTS = {
    "price": ["It was cheap for what you get.", "Far too expensive for me.",
              "The price dropped the week after I bought it.", "Good value at this cost."],
    "shipping": ["The parcel arrived two days late.", "Delivery was fast.",
                 "The courier left the box at the wrong door.", "It shipped the same day."],
    "quality": ["The seams came apart after a month.", "Solid build, nothing rattles.",
                "The plastic feels brittle.", "Well made and sturdy."],
    "service": ["Support answered my email within an hour.", "The help desk never replied.",
                "The store swapped it without questions.", "Customer care was rude on the phone."],
}
FILLER = ["I bought it for my brother.", "We use it in the kitchen.", "It comes in blue and grey.",
          "This is my second one.", "I read the reviews first.", "The manual is short.",
          "My partner uses it too.", "It replaced an older model."]


def review(rng: random.Random) -> dict[str, object]:
    aspects = [name for name in ASPECTS if rng.random() < 0.35]
    sentences = [rng.choice(ASPECTS[name]) for name in aspects]
    sentences += rng.sample(FILLER, k=rng.randint(1, 3))
    rng.shuffle(sentences)
    return {"text": " ".join(sentences), "labels": aspects}


def write(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps(review(rng)) + "\n" for _ in range(rows)),
                    encoding="utf-8")


if __name__ == "__main__":
    folder = Path(__file__).resolve().parents[1] / "examples" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "aspects_train.jsonl", 600, seed=1)
    write(folder / "aspects_test.jsonl", 200, seed=2)
    print(f"wrote {folder}/aspects_train.jsonl and aspects_test.jsonl")
