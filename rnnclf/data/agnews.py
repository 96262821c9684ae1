"""AG News on disk: find (or download and verify) the CSV files, and read their rows."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from rnnclf.errors import RnnclfError

LABEL_NAMES = ("World", "Sports", "Business", "Sci/Tech")
# The CSV mirror torchtext's AG_NEWS downloaded from, and the MD5s torchtext checked.
MIRROR = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
KNOWN_MD5 = {
    "train.csv": "b1a00f826fdfbd249f79597b59e1dc12",
    "test.csv": "d52ea96a97a2d943681189a97654912d",
}
# A field this long almost always means an unclosed quote swallowed the rest of the file.
MAX_FIELD_CHARS = 1_000_000


@dataclass(frozen=True)
class Row:
    label: int  # 0-based class index
    text: str  # title and description joined by a space


def user_cache_dir(env_var: str, leaf: str) -> Path:
    """$env_var when set, else <XDG cache home>/rnnclf/<leaf> (~/.cache/rnnclf/<leaf>)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "rnnclf" / leaf


def default_data_dir() -> Path:
    return user_cache_dir("RNNCLF_DATA_DIR", "ag_news")


def locate(data_dir: Path, file_name: str, download: bool, mirror: str | None = None) -> Path:
    """Path of `file_name` in `data_dir`, downloading the canonical AG News file if allowed."""
    path = data_dir / file_name
    if path.is_file():
        return path
    if path.exists():
        raise RnnclfError(f"{path} is not a file; put the AG News CSV there")
    if not download or file_name not in KNOWN_MD5:
        raise RnnclfError(
            f"{path} is missing; put the AG News CSV there, or set data.dir / data.train_file / "
            "data.test_file to where it is"
        )
    from rnnclf.data.download import download_file

    base = mirror or os.environ.get("RNNCLF_AGNEWS_MIRROR") or MIRROR
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RnnclfError(f"cannot create data folder {data_dir}: {error.strerror}") from None
    try:
        return download_file(base.rstrip("/") + "/" + file_name, path, KNOWN_MD5[file_name])
    except RnnclfError as error:
        raise RnnclfError(
            f"{error} (offline? put train.csv and test.csv from AG News into {data_dir}, "
            "or set data.dir)"
        ) from None


def _bad_row(path: Path, line: int, problem: str, skip: bool, skipped: list[str]) -> None:
    message = f"{path}, line {line}: {problem}"
    if not skip:
        raise RnnclfError(f"{message}; fix the row, or set data.on_bad_row=skip to skip such rows")
    skipped.append(message)


def _check_fields(fields: list[str]) -> Row | str:
    """The row, or what is wrong with it."""
    if len(fields) != 3:
        return f"expected 3 columns (label, title, description), found {len(fields)}"
    label_text, title, description = fields
    if label_text.strip() not in ("1", "2", "3", "4"):
        return f"label {label_text[:20]!r} is not one of 1, 2, 3, 4"
    joined = f"{title} {description}".strip()
    if not joined:
        return "title and description are both empty"
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return "the row is not valid UTF-8"
    return Row(int(label_text) - 1, joined)


def _read_from(path: Path, lines: list[str], start: int, rows: list[Row], skipped: list[str],
               skip: bool) -> int | None:
    """Parse `lines[start:]` into `rows`; return where to parse again, or None when done.

    A bad record that spans several lines (an unclosed quote) may have swallowed clean rows
    after it, so only its first line is reported and parsing restarts on the line after it.
    """
    reader = csv.reader(lines[index] for index in range(start, len(lines)))
    before = 0  # lines consumed before the current record
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return None
        except csv.Error as error:
            problem = str(error)
            if "field larger" in problem:
                problem = (f"a field is longer than {MAX_FIELD_CHARS:,} characters "
                           "(an unclosed quote?)")
            _bad_row(path, start + before + 1, problem, skip, skipped)
            return start + before + 1
        first, last = start + before + 1, start + reader.line_num
        before = reader.line_num
        if not fields:
            continue  # blank line
        checked = _check_fields(fields)
        if isinstance(checked, Row):
            rows.append(checked)
            continue
        _bad_row(path, first, checked, skip, skipped)
        if last > first:
            return first  # re-read the lines this record spanned, each on its own


def read_rows(path: Path, on_bad_row: str = "error") -> tuple[list[Row], list[str]]:
    """Rows of an AG News CSV ("label","title","description", labels 1-4), and skipped-row notes.

    Tolerates a UTF-8 byte-order mark and CRLF line ends. A malformed row (wrong column count,
    label outside 1-4, empty text, invalid UTF-8, runaway field) stops the read with its line
    number, or is skipped and reported when `on_bad_row` is "skip". Clean rows are never dropped.
    """
    skip = on_bad_row == "skip"
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise RnnclfError(f"cannot read {path}: {error.strerror}") from None
    # surrogateescape keeps undecodable bytes visible per row instead of failing the whole file.
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    rows: list[Row] = []
    skipped: list[str] = []
    lines = list(io.StringIO(text, newline=""))  # split at line ends only, each kept
    old_limit = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        start = 0  # index of the line the current reader began at
        while start is not None:
            start = _read_from(path, lines, start, rows, skipped, skip)
    finally:
        csv.field_size_limit(old_limit)
    if not rows:
        raise RnnclfError(f"{path} holds no usable rows; expected AG News CSV rows "
                          '"label","title","description"')
    return rows, skipped
