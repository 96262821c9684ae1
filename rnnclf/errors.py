"""Errors a user can cause. The CLI prints them as one line; anything else is a bug."""

from __future__ import annotations


class RnnclfError(Exception):
    """A problem the user can fix: bad config, missing file, bad checkpoint, empty text.

    The message is one line that names the problem and the fix. The CLI exits with `exit_code`.
    """

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class RunFailed(RnnclfError):
    """A run that started but could not finish (non-finite loss, disk full): exit code 1."""

    exit_code = 1


class Interrupted(RnnclfError):
    """Training stopped on SIGINT/SIGTERM after saving last.pt (exit 130 / 143)."""

    exit_code = 130


class StoppedAtOnce(BaseException):
    """A second SIGINT/SIGTERM: leave now without saving; every file on disk stays whole.

    A BaseException (like KeyboardInterrupt) so that no `except Exception` swallows it, but not
    a KeyboardInterrupt, which Typer would turn into a silent exit 130 even for SIGTERM.
    """

    def __init__(self, exit_code: int = 130) -> None:
        super().__init__()
        self.exit_code = exit_code


def one_line(text: str) -> str:
    """`text` with its line breaks as spaces (an OS error or a file name may carry some), so the
    CLI prints every error on one line."""
    return " ".join(text.splitlines())
