"""The shipped configs (configs/*.yaml): found by name from any folder, listed with a description.

The repository's top-level configs/ is their one source. A wheel carries them as package data in
rnnclf/configs/ (setup.py maps the folder there); a source checkout (an editable install, or
PYTHONPATH) reads configs/ beside the package. Any *.yaml dropped there is shipped.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from rnnclf.errors import RnnclfError

_PACKAGE = Path(__file__).resolve().parents[1]  # rnnclf/
DESCRIPTION_CHARS = 90  # `config list` keeps each description on one terminal line


def shipped_configs_dir() -> Path | None:
    """rnnclf/configs/ in an installed wheel, else configs/ of the source checkout."""
    installed = _PACKAGE / "configs"
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent
    if (checkout / "setup.py").is_file() and (checkout / "configs").is_dir():
        return checkout / "configs"
    return None


def shipped_configs() -> dict[str, Path]:
    """Name (the file name without .yaml) -> path, sorted by name."""
    folder = shipped_configs_dir()
    paths = sorted(folder.glob("*.yaml")) if folder is not None else []
    return {path.stem: path for path in paths}


def resolve_config(path: Path) -> Path:
    """`path` if it exists (a file always wins over a shipped name), else the shipped config of
    that name; anything else is one line that lists the shipped names."""
    if path.exists():
        return path
    shipped = shipped_configs()
    names = ", ".join(shipped) or "none found"
    is_name = len(path.parts) == 1 and path.suffix in ("", ".yaml", ".yml")
    if is_name and path.stem in shipped:
        return shipped[path.stem]
    if is_name:
        close = difflib.get_close_matches(path.stem, list(shipped), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RnnclfError(f"config file {path} does not exist and no shipped config has that "
                          f"name{hint}; give a YAML file or one of: {names}")
    hint = (f"; the shipped {path.stem} goes by name: rnnclf train {path.stem}"
            if path.stem in shipped else f" (shipped configs, by name: {names})")
    raise RnnclfError(f"config file {path} does not exist; check the path{hint}")


def description(path: Path) -> str:
    """The first sentence of the file's opening comment after its command line, cut at a clause
    boundary to fit one line (the convention: line 1 runs it, line 2 says what it is)."""
    comment: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not (not comment and text.startswith("rnnclf ")):
            comment.append(text)
    sentence = " ".join(comment).split(". ")[0].rstrip(".")
    if len(sentence) <= DESCRIPTION_CHARS:
        return sentence
    head = sentence[:DESCRIPTION_CHARS]
    cut = max(head.rfind(mark) for mark in (",", ":", ";", " ("))
    return head[:cut] if cut > DESCRIPTION_CHARS // 3 else head.rsplit(" ", 1)[0] + " ..."
