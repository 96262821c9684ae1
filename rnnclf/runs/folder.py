"""The run folder: where it is, one training at a time in it, and --overwrite without loss.

A training claims its folder (`claim_run_folder`) for as long as it runs: it holds the folder's
lock (rnnclf.runs.lock), so a second training or `--resume` into the same folder is refused.

`--overwrite` keeps the previous run until the new one has something to show for itself: the
previous run's files move into the hidden folder `.replaced/` (best.pt excepted: it stays where
readers look for it, whole, until the new run's first best.pt replaces it atomically). Once the
new run has written its first best.pt, `.replaced/` is deleted; if the new run fails or is
stopped before that, the previous run's files come back. A `.replaced/` that a kill -9 left is
settled the same way by the next process that claims the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from rnnclf.config.schema import Config, default_runs_dir
from rnnclf.errors import Interrupted, RnnclfError
from rnnclf.runs.lock import RunLock

RUN_FILES = ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.json", "eval.json")
MEMBER_FOLDERS = "member_*"  # an ensemble's members (rnnclf.training.ensemble)
SET_ASIDE = ".replaced"  # the previous run's files while an --overwrite run has no best.pt yet
DISCARDED = ".discarded"  # SET_ASIDE on its way out (renamed first, so a kill leaves no doubt)
OLD_BEST = "best.pt.identity"  # in SET_ASIDE: which file best.pt was when the new run started


def run_directory(config: Config) -> Path:
    runs_dir = Path(config.train.runs_dir).expanduser() if config.train.runs_dir \
        else default_runs_dir()
    return runs_dir / config.train.name


class RunFolder:
    """A run folder this process trains in: locked, the previous run set aside on --overwrite."""

    def __init__(self, path: Path, lock: RunLock) -> None:
        self.path = path
        self.lock = lock
        self.replacing = False  # True while a previous run waits in SET_ASIDE

    def new_best_written(self) -> None:
        """The new run has its own best.pt: the previous run is no longer needed."""
        if self.replacing:
            _discard_set_aside(self.path)
            self.replacing = False

    def put_back_previous(self) -> bool:
        """Undo an --overwrite whose new run has no best.pt; True if a previous run came back."""
        if not self.replacing:
            return False
        self.replacing = False
        try:
            return _settle_set_aside(self.path)
        except OSError:  # the next claim of the folder settles what is left
            return False


@contextlib.contextmanager
def claim_run_folder(run_dir: Path, overwrite: bool = False, resuming: bool = False
                     ) -> Iterator[RunFolder]:
    """Own `run_dir` for the length of the block; refuse at once if another training does.

    A new run (`resuming` false) refuses a folder that holds a run unless `overwrite`; with it,
    the previous run is set aside and comes back if the block fails before the new run calls
    `new_best_written()`. Temp files of killed writers are removed once the lock is held.
    """
    if resuming and not run_dir.is_dir():
        raise RnnclfError(f"{run_dir} is not a run folder; give the folder of the run to resume")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RnnclfError(f"cannot write to run folder {run_dir}: {error.strerror}; choose "
                          "another train.runs_dir") from None
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        try:
            _settle_set_aside(run_dir)  # an --overwrite that a kill -9 cut short
        except OSError as error:
            raise RnnclfError(f"cannot put back the previous run in {run_dir}/{SET_ASIDE}: "
                              f"{error.strerror}; check the folder's permissions") from None
        remove_stale_temp_files(run_dir)
        folder = RunFolder(run_dir, lock)
        if not resuming:
            folder.replacing = _set_aside_previous_run(run_dir, overwrite)
        try:
            yield folder
        except Interrupted as stop:
            if folder.put_back_previous():
                raise _interrupted_before_first_best(stop, run_dir) from None
            raise
        except BaseException:
            folder.put_back_previous()
            raise
        folder.new_best_written()  # finished: the new run stays, even without a new best.pt
    finally:
        lock.release()


def _interrupted_before_first_best(stop: Interrupted, run_dir: Path) -> Interrupted:
    where = str(stop).split(";")[0]  # "stopped by SIGINT at epoch 1, step 40"
    return Interrupted(f"{where}, before the new run's first best.pt; the previous run in "
                       f"{run_dir} was put back (--overwrite replaces it once the new run has "
                       "a best.pt)", exit_code=stop.exit_code)


def _previous_run(run_dir: Path) -> list[Path]:
    files = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    return files + sorted(path for path in run_dir.glob(MEMBER_FOLDERS) if path.is_dir())


def _set_aside_previous_run(run_dir: Path, overwrite: bool) -> bool:
    """Move the previous run into SET_ASIDE (best.pt stays); False when there was none."""
    existing = [path for path in _previous_run(run_dir) if path.name in RUN_FILES]
    if existing and not overwrite:
        raise RnnclfError(f"{run_dir} already holds a run "
                          f"({', '.join(path.name for path in existing)}); pass --resume "
                          f"{run_dir} to continue it, --overwrite to replace it, or choose "
                          "another train.name")
    previous = _previous_run(run_dir) if overwrite else []
    if not previous:
        return False
    aside = run_dir / SET_ASIDE
    try:
        aside.mkdir()
        (aside / OLD_BEST).write_text(_identity(run_dir / "best.pt"), encoding="utf-8")
        for path in previous:
            if path.name != "best.pt":
                os.replace(path, aside / path.name)
    except OSError as error:
        _settle_set_aside(run_dir)
        raise RnnclfError(f"cannot replace the run in {run_dir}: {error.strerror}; check the "
                          "folder's permissions or choose another train.name") from None
    return True


def _identity(path: Path) -> str:
    """Which file `path` is (inode, size, mtime); '' when there is none. A new best.pt is
    written to a temp file and renamed over it, so it is always a different file."""
    try:
        stat = path.stat()
    except OSError:
        return ""
    return f"{stat.st_ino} {stat.st_size} {stat.st_mtime_ns}"


def _settle_set_aside(run_dir: Path) -> bool:
    """Finish what an --overwrite left in SET_ASIDE: discard it if the new run wrote best.pt,
    else put the previous run back. True if the previous run came back."""
    with contextlib.suppress(OSError):
        shutil.rmtree(run_dir / DISCARDED)
    aside = run_dir / SET_ASIDE
    if not aside.is_dir():
        return False
    try:
        old_best = (aside / OLD_BEST).read_text(encoding="utf-8")
    except OSError:
        old_best = None  # killed before the identity was written: nothing was moved yet
    if old_best is not None and _identity(run_dir / "best.pt") != old_best:
        _discard_set_aside(run_dir)
        return False
    for path in _previous_run(run_dir):  # the new run's files (best.pt is still the old one)
        if path.name != "best.pt":
            _remove(path)
    for path in aside.iterdir():
        if path.name != OLD_BEST:
            os.replace(path, run_dir / path.name)
    shutil.rmtree(aside, ignore_errors=True)
    return True


def _discard_set_aside(run_dir: Path) -> None:
    with contextlib.suppress(OSError):
        os.replace(run_dir / SET_ASIDE, run_dir / DISCARDED)
        shutil.rmtree(run_dir / DISCARDED)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def remove_stale_temp_files(run_dir: Path) -> None:
    """Temp files a killed process left behind (`.last.pt.<random>.tmp`); never read by anyone.
    Call only while holding the folder's lock: then no live process is writing them."""
    for name in RUN_FILES:
        for temp in run_dir.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                temp.unlink()
