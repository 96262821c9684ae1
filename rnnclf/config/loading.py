"""One way to load a config: YAML -> `section.key=value` overrides -> validated dataclasses.

Loading rejects unknown keys, wrong types and out-of-range values with one line naming the key,
the value and what is allowed.
"""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from rnnclf.config.schema import SECTIONS, Config, DataConfig, field_table
from rnnclf.config.shipped import resolve_config
from rnnclf.errors import RnnclfError

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

# Defaults that changed after runs were saved without the key: a saved run means the old value.
_SAVED_BEFORE = {"optim": {"sparse_embedding": False},  # added in 0.1 with default false
                 "model": {"ngram_order": 0}}  # added with the n-gram bag, off until then


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce_type(key: str, value: Any, kind: type) -> Any:
    """`value` in the field's type (bool, int, float, str), or one line saying what to use."""
    shown = repr(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise RnnclfError(f"{key}: {shown} is not allowed; use true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RnnclfError(f"{key}: {shown} is not allowed; use a whole number")
    elif kind is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 3e-3 (no dot) as text, yet it means a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RnnclfError(f"{key}: {shown} is not allowed; use a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise RnnclfError(f"{key}: {shown} is not allowed; use a finite number")
    elif kind is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise RnnclfError(f"{key}: {shown} is not allowed; use a text value")
        value = str(value)
    return value


def _check_limits(key: str, value: Any, shown: str, meta: dict[str, Any]) -> None:
    """The field's choices and min/max; `shown` is the value as the user wrote it."""
    choices = meta.get("choices")
    if choices and value not in choices:
        hint = _did_you_mean(str(value), list(choices))
        allowed = ", ".join(choices)
        raise RnnclfError(f"{key}: {shown} is not allowed; choose one of {allowed}{hint}")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and (value < low or (meta.get("min_exclusive") and value == low)):
        bound = f"greater than {low}" if meta.get("min_exclusive") else f"at least {low}"
        raise RnnclfError(f"{key}: {shown} is not allowed; it must be {bound}")
    if high is not None and (value > high or (meta.get("max_exclusive") and value == high)):
        bound = f"less than {high}" if meta.get("max_exclusive") else f"at most {high}"
        raise RnnclfError(f"{key}: {shown} is not allowed; it must be {bound}")


def _number(item: Any) -> float | None:
    """A YAML number (or 3e-3-style text, which YAML 1.1 reads as text) as a float, else None."""
    if isinstance(item, str) and (_SCIENTIFIC.fullmatch(item.strip())
                                  or re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)", item.strip())):
        item = float(item)
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return None
    return float(item) if abs(item) < 1e300 else float("inf")  # float(10**400) overflows


def _class_weights(key: str, value: Any) -> str | list[float]:
    """optim.class_weights: none, balanced, or a list of weights (one per class, checked against
    the data when training starts); `1,19` without brackets is a list too."""
    shown = repr(value)
    fix = "use none, balanced, or one weight per class in label order, e.g. [1, 19]"
    if value is None:
        return "none"
    if isinstance(value, str) and "," not in value:
        if value.strip() in ("none", "balanced"):
            return value.strip()
        hint = _did_you_mean(value.strip(), ["none", "balanced"])
        raise RnnclfError(f"{key}: {shown} is not allowed; {fix}{hint}")
    if isinstance(value, str):
        value = value.strip().strip("[]").split(",")
    if not isinstance(value, list):
        raise RnnclfError(f"{key}: {shown} is not allowed; {fix}")
    weights = [_number(item) for item in value]
    if len(weights) < 2 or any(weight is None for weight in weights):
        raise RnnclfError(f"{key}: {shown} is not allowed; {fix}")
    checked = [weight for weight in weights if weight is not None]
    if not all(0 <= weight < float("inf") for weight in checked):
        raise RnnclfError(f"{key}: {shown} is not allowed; every weight must be a finite number "
                          ">= 0 (e.g. [1, 19])")
    if not any(checked):
        raise RnnclfError(f"{key}: {shown} is not allowed; at least one weight must be above 0")
    return checked


# Fields whose values are not one scalar: their own check instead of type and limits.
_OWN_CHECK = {"optim.class_weights": _class_weights}


def _coerce_list(key: str, value: Any, item_kind: type, meta: dict[str, Any]) -> list[Any]:
    """A list field: a YAML list (one value alone is a list of one); each item is checked."""
    items = [] if value is None else value if isinstance(value, list) else [value]
    coerced = [_coerce_type(key, item, item_kind) for item in items]
    for item, shown in zip(coerced, items):
        _check_limits(key, item, repr(shown), meta)
    return coerced


def _coerce(key: str, value: Any, kind: type, meta: dict[str, Any]) -> Any:
    """Check one value against its field's type and limits; return it in the field's type."""
    if key in _OWN_CHECK:
        return _OWN_CHECK[key](key, value)
    if typing.get_origin(kind) is list:
        return _coerce_list(key, value, typing.get_args(kind)[0], meta)
    coerced = _coerce_type(key, value, kind)
    _check_limits(key, coerced, repr(value), meta)
    return coerced


def from_saved_dict(raw: Any, source: str) -> Config:
    """A Config saved in a checkpoint; keys it lacks keep the meaning they had when it was saved."""
    if isinstance(raw, dict):
        raw = {**raw}
        for section, old_defaults in _SAVED_BEFORE.items():
            if isinstance(raw.get(section), dict):
                raw[section] = {**old_defaults, **raw[section]}
    return from_dict(raw, source)


def _section(section_name: Any, values: Any, source: str) -> Any:
    """One validated section dataclass from its raw `key: value` mapping."""
    if section_name not in SECTIONS:
        hint = _did_you_mean(str(section_name), list(SECTIONS))
        raise RnnclfError(
            f"{source}: unknown section {str(section_name)!r}{hint}; "
            f"sections are {', '.join(SECTIONS)}"
        )
    section_type = SECTIONS[section_name]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RnnclfError(
            f"{source}: section '{section_name}' must be a mapping of key: value, "
            f"not a {type(values).__name__}"
        )
    table = field_table(section_type)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{section_name}.{key}"
        if key not in table:
            hint = _did_you_mean(str(key), list(table))
            raise RnnclfError(
                f"{source}: unknown key {dotted!r}{hint}; "
                f"'{section_name}' takes {', '.join(table)}"
            )
        kind, meta = table[key]
        checked[key] = _coerce(dotted, value, kind, meta)
    return section_type(**checked)


def from_dict(raw: Any, source: str = "config") -> Config:
    """Build a validated Config from a nested mapping (as read from YAML)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RnnclfError(
            f"{source}: the top level must be a mapping of sections "
            f"({', '.join(SECTIONS)}), not a {type(raw).__name__}"
        )
    config = Config(**{name: _section(name, values, source) for name, values in raw.items()})
    if not _DEVICE.fullmatch(config.train.device):
        raise RnnclfError(
            f"train.device: {config.train.device!r} is not allowed; use auto, cpu, cuda or cuda:N"
        )
    _check_data_fields(config.data)
    if config.train.ensemble_members:
        _check_members(config, source)
    return config


# What a member may not change: the shared data and vocabulary, and the ensemble's own settings.
_MEMBER_SECTIONS = ("model", "optim", "train")
_MEMBER_FIXED = frozenset({"model.pretrained_vocab", "train.ensemble", "train.ensemble_members",
                           "train.name", "train.runs_dir", "train.seed", "train.device"})


def _check_members(config: Config, source: str) -> None:
    """Every member's overrides must make a valid config; the ensemble has one per member."""
    members = config.train.ensemble_members
    if not isinstance(members, list) or not all(isinstance(item, dict) for item in members):
        raise RnnclfError("train.ensemble_members: give a list of mappings, one per member, "
                          "e.g. [{model.cell: lstm}, {model.ngram_order: 0}]")
    if len(members) < 2:
        raise RnnclfError("train.ensemble_members: an ensemble needs two or more members; for "
                          "one model set its overrides directly (e.g. model.cell=lstm)")
    largest = field_table(SECTIONS["train"])["ensemble"][1]["max"]
    if len(members) > largest:
        raise RnnclfError(f"train.ensemble_members: {len(members)} members is too many; give at "
                          f"most {largest:g}")
    if config.train.ensemble not in (1, len(members)):
        raise RnnclfError(f"train.ensemble: {config.train.ensemble} does not match the "
                          f"{len(members)} train.ensemble_members; leave it at 1 or drop one")
    for index in range(len(members)):
        member_config(config, index, source)
    config.train.ensemble = len(members)


def member_config(config: Config, index: int, source: str = "config") -> Config:
    """Member `index` (0-based) of `config`'s ensemble_members: the config with its overrides,
    as a single model (train.ensemble 1, no members)."""
    where = f"{source}: train.ensemble_members[{index}]"
    raw = config.to_dict()
    for key, value in config.train.ensemble_members[index].items():
        section, _, name = str(key).partition(".")
        if section not in _MEMBER_SECTIONS or not name or "." in name:
            raise RnnclfError(f"{where}: {key!r} is not allowed; a member overrides "
                              f"section.key of {', '.join(_MEMBER_SECTIONS)} (e.g. model.cell)")
        if key in _MEMBER_FIXED:
            raise RnnclfError(f"{where}: {key} is shared by every member; set it outside "
                              "train.ensemble_members")
        raw[section][name] = value
    raw["train"].update(ensemble=1, ensemble_members=[])
    try:
        return from_dict(raw, where)
    except RnnclfError as error:  # a value error names the key, not yet the member
        message = str(error)
        raise RnnclfError(message if message.startswith(where) else f"{where}: {message}") \
            from None


def _check_data_fields(data: DataConfig) -> None:
    """Own-data column settings: at least one text field; numbers when there is no header."""
    if data.dataset == "ag_news":
        return
    names = [name.strip() for name in data.text_fields.split(",") if name.strip()]
    if not names:
        raise RnnclfError(f"data.text_fields: {data.text_fields!r} is not allowed; name the "
                          "text column(s), comma-separated (e.g. text or title,body)")
    if not data.label_field.strip():
        raise RnnclfError("data.label_field: '' is not allowed; name the label column")
    if data.dataset == "csv" and not data.header:
        for key, values in (("data.text_fields", names), ("data.label_field",
                                                          [data.label_field.strip()])):
            if not all(value.isdigit() for value in values):
                raise RnnclfError(f"{key}: {', '.join(values)!r} is not allowed with "
                                  "data.header=false; give 0-based column numbers (e.g. 0 or 1,2)")


def parse_override(text: str) -> tuple[str, str, str]:
    """'model.cell=lstm' -> ('model', 'cell', 'lstm')."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or key.count(".") != 1 or not all(key.split(".")):
        raise RnnclfError(
            f"override {text!r} is not of the form section.key=value (e.g. model.cell=lstm)"
        )
    section, name = key.split(".")
    return section, name, value


def _override_value(raw_value: str, kind: type | None) -> Any:
    """Override values are YAML scalars, except for text fields, which keep what was typed."""
    if kind is str:
        return raw_value
    try:
        return yaml.safe_load(raw_value) if raw_value.strip() else raw_value
    except yaml.YAMLError:
        return raw_value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Merge `section.key=value` strings into a raw config mapping (validated later)."""
    merged = {name: dict(values) if isinstance(values, dict) else values
              for name, values in raw.items()}
    for text in overrides:
        section, name, raw_value = parse_override(text)
        section_type = SECTIONS.get(section)
        kind = field_table(section_type).get(name, (None, {}))[0] if section_type else None
        target = merged.setdefault(section, {})
        if target is None:  # `model:` with nothing under it in the YAML
            target = merged[section] = {}
        if not isinstance(target, dict):
            raise RnnclfError(f"section '{section}' must be a mapping of key: value, not a "
                              f"{type(target).__name__}; fix the config file")
        target[name] = _override_value(raw_value, kind)
    return merged


def read_yaml(path: Path) -> Any:
    """The YAML document in `path`; a missing, unreadable or malformed file is one line."""
    if not path.exists():
        raise RnnclfError(f"config file {path} does not exist; check the path")
    if path.is_dir():
        raise RnnclfError(f"config path {path} is a folder; give a .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RnnclfError(f"cannot read config file {path}: {error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise RnnclfError(f"{path}: invalid YAML{where}: {problem}; fix the file") from None


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file (or the defaults) -> overrides -> validated Config, with a run name filled in.
    `path` may name a shipped config instead (`agnews_lstm`); an existing file wins."""
    if path is not None:
        path = resolve_config(Path(path))
    raw = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        from_dict(raw, source)  # raises the "must be a mapping" error
    config = from_dict(apply_overrides(raw, overrides or []), source)
    if not config.train.name:
        config.train.name = path.stem if path is not None else "default"
    return config


def to_yaml(config: Config) -> str:
    """The config as YAML, sections and fields in their declared order."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
