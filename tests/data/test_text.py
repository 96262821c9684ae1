"""Tokenizer (torchtext basic_english), AG News cleaning, and the vocabulary."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rnnclf.data.text import PAD, PAD_INDEX, UNK, UNK_INDEX, Vocab, clean_ag_news, tokenize

# --- tokenize: torchtext's own reference ---------------------------------------------------------


def test_tokenize_matches_torchtext_reference_on_every_test_row(ag_news_dir: Path) -> None:
    """SOURCES.md: tokenize(" , ".join(row)) == [label] + reference tokens, for all 7,600 rows."""
    with (ag_news_dir / "test.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    reference = (ag_news_dir / "torchtext_basic_english_reference.test").read_text(
        encoding="utf-8").splitlines()
    assert len(rows) == len(reference) == 7600
    mismatches = []
    for number, (row, line) in enumerate(zip(rows, reference), 1):
        expected = line.split()
        assert expected[0].startswith("__label__")
        if tokenize(" , ".join(row)) != [expected[0][len("__label__"):], *expected[1:]]:
            mismatches.append(number)
    assert mismatches == [], f"{len(mismatches)} rows differ, first: {mismatches[:5]}"


# --- tokenize: the rules by hand ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "tokens"), [
    ("Hello World", ["hello", "world"]),
    ("it's", ["it", "'", "s"]),  # apostrophe padded with spaces
    ("don't stop", ["don", "'", "t", "stop"]),
    ('He said "hi" loudly', ["he", "said", "hi", "loudly"]),  # double quotes removed
    ('a"b', ["ab"]),  # removed, not replaced by a space
    ("one<br />two", ["one", "two"]),  # <br /> is a break
    ('one<br "/>two', ["one", "two"]),  # quote removal happens before the <br /> rule
    ("a;b:c", ["a", "b", "c"]),  # ; and : become spaces and vanish
    ("end. (x), y! z?", ["end", ".", "(", "x", ")", ",", "y", "!", "z", "?"]),
    ("U.S.", ["u", ".", "s", "."]),
    ("  tabs\tand\nnewlines  ", ["tabs", "and", "newlines"]),
    ("", []),
    ("$46 - A&M", ["$46", "-", "a&m"]),  # other punctuation stays attached
])
def test_tokenize_rules(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


# --- clean_ag_news on artifacts as they occur in AG News ---------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    ("first line\\second line", "first line second line"),  # \ is a lost line break
    ("Reuters - Short-sellers\\band of", "Reuters - Short-sellers band of"),
    ("Eriksson doesn #39;t feel", "Eriksson doesn't feel"),
    ("the company #39;s profit", "the company's profit"),
    ("worth up to  #36;46 million", "worth up to $46 million"),
    ("he said,  quot;We will win quot; today", 'he said, "We will win" today'),
    ("Johnson  amp; Johnson", "Johnson & Johnson"),
    ("Texas A amp;M won", "Texas A&M won"),
    ("AT amp;T Wireless", "AT&T Wireless"),
    ("Texas Instruments Inc. &lt;TXN.N&gt;, said", "Texas Instruments Inc. , said"),
    ("a &lt;b&gt;x&lt;/b&gt; b", "a x b"),
    ("&lt;b&gt;x&lt;/b&gt;", "x"),
    ("new threat #151;prostate cancer", "new threat\u2014prostate cancer"),
    ("  spaced   out  ", "spaced out"),
    ("AT&amp;T", "AT&T"),  # a properly escaped entity is decoded too
    ("nothing to undo", "nothing to undo"),
])
def test_clean_ag_news_artifacts(raw: str, clean: str) -> None:
    assert clean_ag_news(raw) == clean


def test_clean_ag_news_then_tokenize_joins_split_entities() -> None:
    assert tokenize(clean_ag_news("Cingular buys AT amp;T Wireless")) == [
        "cingular", "buys", "at&t", "wireless"]
    assert tokenize(clean_ag_news("Microsoft #39;s new browser")) == [
        "microsoft", "'", "s", "new", "browser"]


def test_clean_ag_news_leaves_words_ending_like_entities_alone() -> None:
    assert clean_ag_news("squot; gamp; xlt;") == "squot; gamp; xlt;"


def test_clean_ag_news_on_real_rows(ag_news_dir: Path) -> None:
    """On the real test set, no half-escaped entity and no backslash survives cleaning."""
    with (ag_news_dir / "test.csv").open(encoding="utf-8", newline="") as handle:
        texts = [f"{title} {description}" for _, title, description in csv.reader(handle)]
    cleaned = [clean_ag_news(text) for text in texts]
    for artifact in (" #39;", " #36;", " quot;", " amp;", "\\", "&lt;", "&gt;"):
        assert sum(artifact in text for text in texts) > 0, artifact  # it occurs in the raw data
        assert [text for text in cleaned if artifact in text] == [], artifact


# --- Vocab --------------------------------------------------------------------------------------


def test_vocab_special_tokens_first() -> None:
    vocab = Vocab.build([["b", "a"]])
    assert vocab.itos[:2] == [PAD, UNK]
    assert (PAD_INDEX, UNK_INDEX) == (0, 1)
    assert vocab.stoi[PAD] == 0 and vocab.stoi[UNK] == 1


def test_vocab_orders_by_frequency_then_alphabetically() -> None:
    vocab = Vocab.build([["pear", "apple", "fig"], ["fig", "apple", "kiwi"], ["fig", "date"]])
    assert vocab.itos == [PAD, UNK, "fig", "apple", "date", "kiwi", "pear"]


def test_vocab_min_freq() -> None:
    vocab = Vocab.build([["a", "a", "a", "b", "b", "c"]], min_freq=2)
    assert vocab.itos == [PAD, UNK, "a", "b"]
    assert "c" not in vocab


def test_vocab_max_size_counts_the_special_tokens() -> None:
    tokens = [["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2]
    assert Vocab.build(tokens, max_size=4).itos == [PAD, UNK, "a", "b"]
    assert len(Vocab.build(tokens, max_size=4)) == 4
    assert len(Vocab.build(tokens, max_size=0)) == 6  # 0 = no limit


def test_vocab_ignores_literal_special_tokens_in_text() -> None:
    vocab = Vocab.build([[PAD, UNK, "x", PAD]])
    assert vocab.itos == [PAD, UNK, "x"]


def test_vocab_encode_maps_unknowns_to_1() -> None:
    vocab = Vocab.build([["hello", "world", "hello"]])
    assert vocab.encode(["hello", "world", "never-seen", "HELLO"]) == [2, 3, 1, 1]
    assert vocab.encode([]) == []


def test_vocab_rejects_a_table_without_the_special_tokens() -> None:
    with pytest.raises(ValueError):
        Vocab(["a", "b"])
    assert len(Vocab([PAD, UNK, "z"])) == 3
