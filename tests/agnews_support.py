"""Generated tiny AG News folders for the tests: one CSV writer, and the row generators the tests
were tuned on (each keeps its own words and random draws, so every test sees the rows it always
saw). Imported by bare name (`from agnews_support import ...`), like kernel_support."""

from __future__ import annotations

import csv
import random
from pathlib import Path

Row = tuple[str, str, str]  # (label "1"-"4", title, description)

# Words only one class uses (labels 1-4: World, Sports, Business, Sci/Tech), plus shared noise.
CLASS_WORDS: dict[int, list[str]] = {
    1: ["president", "minister", "election", "embassy", "troops", "parliament", "rebels",
        "ceasefire", "diplomats", "refugees", "sanctions", "capital", "protest", "treaty",
        "border", "militants", "premier", "summit", "ambassador", "coalition"],
    2: ["football", "coach", "goal", "season", "striker", "tournament", "league", "playoff",
        "quarterback", "championship", "medal", "olympic", "stadium", "referee", "inning",
        "pitcher", "tennis", "golf", "racing", "defender"],
    3: ["shares", "profit", "earnings", "investors", "dividend", "quarterly", "revenue",
        "merger", "stocks", "oil", "bank", "economy", "inflation", "retailer", "bonds",
        "analysts", "acquisition", "sales", "markets", "ceo"],
    4: ["software", "internet", "computer", "microsoft", "linux", "browser", "chip",
        "wireless", "nasa", "spacecraft", "scientists", "broadband", "google", "virus",
        "processor", "satellite", "genome", "server", "download", "robot"],
}
NOISE_WORDS = ["the", "a", "of", "to", "in", "on", "said", "new", "after", "with", "monday",
               "tuesday", "week", "report", "year", "first", "over", "two", "reuters", "ap"]


def write_agnews_csv(path: Path, rows: list[Row]) -> Path:
    """The original layout: every field quoted, "" for an embedded quote, LF line ends."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return path


def write_agnews_folder(folder: Path, train: list[Row], test: list[Row] | None = None) -> Path:
    """`folder` with train.csv and, when `test` is given, test.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    write_agnews_csv(folder / "train.csv", train)
    if test is not None:
        write_agnews_csv(folder / "test.csv", test)
    return folder


def tiny_rows(count: int, seed: int) -> list[Row]:
    """`count` rows balanced over the classes, shuffled: 60% class words, rare words for
    data.min_freq to drop, and AG News' `#39;` entity now and then."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = index % 4 + 1

        def words(n: int, label: int = label) -> list[str]:
            return [rng.choice(CLASS_WORDS[label]) if rng.random() < 0.6
                    else rng.choice(NOISE_WORDS) for _ in range(n)]

        title = " ".join(words(rng.randint(3, 6))).capitalize()
        description = " ".join(words(rng.randint(8, 20))) + "."
        if rng.random() < 0.3:  # rare words, so data.min_freq has something to drop
            description = f"{rng.choice(NOISE_WORDS)} rare{rng.randint(0, 150)} {description}"
        if index % 25 == 0:
            description = description.replace(" the ", " it #39;s the ", 1)
        rows.append((str(label), title, description))
    rng.shuffle(rows)
    return rows


def make_tiny_agnews(folder: Path, train_rows: int = 400, test_rows: int = 80) -> Path:
    """A folder with train.csv and test.csv that a 16-unit model learns in a few epochs."""
    return write_agnews_folder(folder, tiny_rows(train_rows, seed=1), tiny_rows(test_rows, seed=2))


KEYWORDS = {1: "president election troops summit treaty", 2: "football coach goal league medal",
            3: "shares profit bank markets oil", 4: "software internet chip google nasa"}


def keyword_rows(count: int, rng: random.Random) -> list[Row]:
    """Rows in label order drawn from five keywords of the class and four fillers: a 3-word
    title and a description of 2 to 25 words."""
    rows = []
    for index in range(count):
        label = index % 4 + 1
        pool = KEYWORDS[label].split() + ["the", "a", "of", "said"]
        rows.append((str(label), " ".join(rng.choices(pool, k=3)),
                     " ".join(rng.choices(pool, k=rng.randint(2, 25)))))
    return rows


def make_keyword_agnews(folder: Path, rows: int = 240) -> Path:
    """train.csv (`rows` rows) and test.csv (40 rows) of keyword_rows, for an 8-unit model."""
    rng = random.Random(3)
    train = keyword_rows(rows, rng)  # train first: both splits draw from one generator
    return write_agnews_folder(folder, train, keyword_rows(40, rng))


SENTENCE_WORDS = {1: ["president", "minister", "election", "embassy", "troops", "treaty"],
                  2: ["football", "coach", "goal", "season", "striker", "medal"],
                  3: ["shares", "profit", "earnings", "investors", "dividend", "bank"],
                  4: ["software", "internet", "computer", "linux", "chip", "nasa"]}
SENTENCE_NOISE = ["the", "a", "of", "to", "in", "on", "said", "new"]


def make_train_only_agnews(folder: Path, rows: int = 400) -> Path:
    """An AG News-format train.csv (no test.csv) that a tiny model starts to learn within an
    epoch or two: 6 to 24 words, each a class word with probability 0.6, the first 4 the title."""
    rng = random.Random(1)
    lines = []
    for index in range(rows):
        label = index % 4 + 1
        words = [rng.choice(SENTENCE_WORDS[label]) if rng.random() < 0.6
                 else rng.choice(SENTENCE_NOISE) for _ in range(rng.randint(6, 24))]
        lines.append((str(label), " ".join(words[:4]), " ".join(words[4:])))
    return write_agnews_folder(folder, lines)
