"""Property-based: random YAML and random override strings either load as a valid Config or
raise RnnclfError, never anything else."""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
import typing
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnclf.config import Config, load_config
from rnnclf.config.schema import SECTIONS, field_table
from rnnclf.errors import RnnclfError

FIELDS = {section: list(field_table(kind)) for section, kind in SECTIONS.items()}
FOLDER = Path(tempfile.mkdtemp(prefix="rnnclf-config-fuzz-"))
atexit.register(shutil.rmtree, FOLDER, True)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["gru", "lstm", "rnn", "max", "mean", "last", "adamw", "sgd", "cpu",
                     "auto", "cuda:0", "linear", "cosine", "skip", "error", "1e-3", "0"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
awkward = st.text(alphabet="ab.=:'\"\\\n\r\t \x00\u2028\U0001f600", max_size=6)
keys = st.one_of(st.sampled_from(sorted({k for fs in FIELDS.values() for k in fs})),
                 st.text(max_size=12), awkward, st.integers())
sections = st.dictionaries(keys, values, max_size=6) | values
documents = st.dictionaries(st.sampled_from([*SECTIONS, "modle", "extra"]) | awkward,
                            sections, max_size=5) | values


def assert_valid(config: Config) -> None:
    """A Config that loaded must satisfy every limit its fields declare."""
    for section, kind in SECTIONS.items():
        for name, (field_type, meta) in field_table(kind).items():
            value = getattr(getattr(config, section), name)
            if typing.get_origin(field_type) is list:  # a list field: each item is checked
                assert isinstance(value, list), (section, name, value)
                field_type, items = typing.get_args(field_type)[0], value
            else:
                items = [value]
            for value in items:
                assert_valid_value(section, name, value, field_type, meta)
    assert dataclasses.asdict(config)


def assert_valid_value(section: str, name: str, value: object, field_type: type,
                       meta: dict) -> None:
    assert isinstance(value, field_type) and not (
        field_type is int and isinstance(value, bool)), (section, name, value)
    if meta.get("choices"):
        assert value in meta["choices"]
    if meta.get("min") is not None:
        assert value >= meta["min"]
        assert not (meta.get("min_exclusive") and value == meta["min"])
    if meta.get("max") is not None:
        assert value <= meta["max"]
        assert not (meta.get("max_exclusive") and value == meta["max"])


def load_text(text: str, overrides: list[str]) -> None:
    path = FOLDER / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        config = load_config(path, overrides)
    except RnnclfError as error:
        assert "\n" not in str(error), str(error)
        return
    assert_valid(config)


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FUZZ
@given(documents)
def test_random_yaml_documents(document: object) -> None:
    load_text(yaml.safe_dump(document, allow_unicode=True), [])


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
       | st.text(alphabet=":-[]{}!&*#?|>'\"%@` \n\tabcmodeltrain.0123456789", max_size=120))
def test_random_yaml_text(text: str) -> None:
    load_text(text, [])


override_keys = st.one_of(
    st.sampled_from([f"{s}.{k}" for s, fs in FIELDS.items() for k in fs]),
    st.text(max_size=15), awkward,
)
override_values = st.one_of(st.text(max_size=15), awkward, scalars.map(str),
                            st.sampled_from(["[1, 2", "{a: 1}", "!!binary xx", "*alias", "&a 1",
                                             "- x", ": :", "0x1F", "1_000", ".inf", "~", "null",
                                             "yes", "no", "on", "1e400"]))
overrides = st.lists(st.builds(lambda k, sep, v: f"{k}{sep}{v}", override_keys,
                               st.sampled_from(["=", "=", " = ", ""]), override_values),
                     max_size=4)


@FUZZ
@given(documents, overrides)
def test_random_overrides(document: object, texts: list[str]) -> None:
    load_text(yaml.safe_dump(document, allow_unicode=True), texts)


@FUZZ
@given(overrides)
def test_random_overrides_on_the_defaults(texts: list[str]) -> None:
    try:
        config = load_config(None, texts)
    except RnnclfError as error:
        assert "\n" not in str(error), str(error)
        return
    assert_valid(config)
