"""The config explained: resolved YAML with each field's meaning, every default, a file check.

Used by `rnnclf config show|validate`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from rnnclf.config.loading import load_config, to_yaml
from rnnclf.config.schema import SECTIONS, Config, field_table
from rnnclf.errors import RnnclfError


def show(path: Path | None, overrides: list[str], explain: bool = False) -> str:
    """The config with every default filled in, as YAML; `explain` adds each field's meaning."""
    config = load_config(path, overrides)
    return commented_yaml(config) if explain else to_yaml(config)


def commented_yaml(config: Config) -> str:
    """YAML of `config` with a `# meaning` comment after every field."""
    lines = []
    for section, section_type in SECTIONS.items():
        lines.append(f"{section}:")
        values = getattr(config, section)
        for name, (_, meta) in field_table(section_type).items():
            value = getattr(values, name)
            entry = (f"{name}: "
                     + yaml.safe_dump(value, default_flow_style=True, width=1_000).strip()
                     if isinstance(value, list)  # a list on one line, so the comment fits
                     else yaml.safe_dump({name: value}, width=1_000).strip())
            choices = f" ({' | '.join(meta['choices'])})" if meta.get("choices") else ""
            lines.append(f"  {entry}  # {meta['help']}{choices}")
    return "\n".join(lines) + "\n"


def validate(paths: list[Path], log: Callable[[str], None] = print) -> int:
    """Load every file; stop with the first problem (naming the file). Returns the count."""
    if not paths:
        raise RnnclfError("no config file given; pass one or more YAML files")
    for path in paths:
        try:
            load_config(path)
        except RnnclfError as error:
            message = str(error)
            if str(path) not in message:
                message = f"{path}: {message}"
            raise RnnclfError(message) from None
        log(f"ok  {path}")
    return len(paths)


def describe() -> str:
    """Every field with its default and meaning, for the README and `--help`."""
    lines = []
    for section, section_type in SECTIONS.items():
        lines.append(f"{section}:")
        for name, (_, meta) in field_table(section_type).items():
            default = getattr(section_type(), name)
            lines.append(f"  {name}: {default!r}  # {meta['help']}")
    return "\n".join(lines)
