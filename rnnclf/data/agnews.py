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


def default_data_dir() -> Path:
    env = os.environ.get("RNNCLF_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "rnnclf" / "ag_news"


def resolve_data_dir(configured: str) -> Path:
    return (Path(configured).expanduser() if configured else default_data_dir()).resolve()


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
    old_limit = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        line = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                line = reader.line_num
                problem = str(error)
                if "field larger" in problem:
                    problem = (f"a field is longer than {MAX_FIELD_CHARS:,} characters "
                               "(an unclosed quote?)")
                _bad_row(path, line, problem, skip, skipped)
                continue
            line = reader.line_num
            if not fields:
                continue  # blank line
            if len(fields) != 3:
                _bad_row(path, line, f"expected 3 columns (label, title, description), found "
                         f"{len(fields)}", skip, skipped)
                continue
            label_text, title, description = fields
            if label_text.strip() not in ("1", "2", "3", "4"):
                _bad_row(path, line, f"label {label_text[:20]!r} is not one of 1, 2, 3, 4",
                         skip, skipped)
                continue
            joined = f"{title} {description}".strip()
            if not joined:
                _bad_row(path, line, "title and description are both empty", skip, skipped)
                continue
            try:
                joined.encode("utf-8")
            except UnicodeEncodeError:
                _bad_row(path, line, "the row is not valid UTF-8", skip, skipped)
                continue
            rows.append(Row(int(label_text) - 1, joined))
    finally:
        csv.field_size_limit(old_limit)
    if not rows:
        raise RnnclfError(f"{path} holds no usable rows; expected AG News CSV rows "
                          '"label","title","description"')
    return rows, skipped
