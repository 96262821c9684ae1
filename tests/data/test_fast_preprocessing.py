"""The fast cleaning, tokenizing and encoding paths give what the plain per-text code gives."""

from __future__ import annotations

import html
import re

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnclf.data import text as text_module
from rnnclf.data.dataset import encode_texts
from rnnclf.data.text import _BASIC_ENGLISH_TABLE, Vocab, clean_ag_news, tokenize


def reference_clean(text: str) -> str:
    """clean_ag_news before the fast paths (with the module's own entity patterns)."""
    text = text.replace("\\", " ")
    text = text_module._NUMERIC_ENTITY.sub(r"&#\1;", text)
    text = text_module._NAMED_ENTITY.sub(r"&\1;", text)
    text = html.unescape(text)
    text = text_module._TAG.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def reference_tokenize(text: str) -> list[str]:
    text = text.lower().replace('"', "").replace("<br />", " ")
    return text.translate(_BASIC_ENGLISH_TABLE).split()


PIECES = st.sampled_from(["#39;", " #39;", "quot;", " quot;", "&amp;", "&lt;b&gt;", "<br />",
                          "<a href=x>", ">", "<", "\\", "'", '"', ".", ",", "(", ")", "!", "?",
                          ";", ":", " ", "\t", "\n", "\xa0", "\x1c", "\u2003", "Word", "it",
                          "s", "1", "nbsp;", "&#233;", "#", "&"])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=30).map("".join))
def test_fast_cleaning_and_tokenizing_match_the_reference(text: str) -> None:
    assert clean_ag_news(text) == reference_clean(text)
    assert tokenize(text) == reference_tokenize(text)
    assert tokenize(clean_ag_news(text)) == reference_tokenize(reference_clean(text))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "zz", "<unk>", "<pad>"]), max_size=6),
                max_size=8))
def test_encode_texts_matches_the_per_text_loop(token_lists: list[list[str]]) -> None:
    vocab = Vocab(["<pad>", "<unk>", "a", "b"])
    split = encode_texts(token_lists, [0] * len(token_lists), vocab)
    expected = [vocab.encode(tokens) or [1] for tokens in token_lists]
    assert split.lengths.tolist() == [len(ids) for ids in expected]
    assert split.tokens.tolist() == [i for ids in expected for i in ids]
    assert split.tokens.dtype == torch.int32
