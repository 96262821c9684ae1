"""Ctrl-C and SIGTERM during training: the first finishes the step and saves, the second leaves."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rnnclf.errors import Interrupted, StoppedAtOnce
from rnnclf.training.distributed import DistContext


class StopSignal:
    """First SIGINT/SIGTERM: finish the current step and save; second: stop at once."""

    def __init__(self) -> None:
        self.received: int | None = None

    @contextmanager
    def installed(self) -> Iterator[StopSignal]:
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handle(signum: int, frame: Any) -> None:
            if self.received is not None:
                # Second signal: leave now. Every write is atomic (temp file + rename), so
                # whatever this interrupts, the files on disk stay the previous whole versions.
                raise StoppedAtOnce(exit_code(signum))
            self.received = signum

        try:
            for sig in previous:
                signal.signal(sig, handle)
        except ValueError:  # not the main thread: run without graceful stop
            yield self
            return
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def agreed(self, dist: DistContext, sync_point: bool = True) -> bool:
        """Whether to stop now. Under DDP the ranks agree only at sync points (every LOG_EVERY
        steps), so all of them stop after the same step; one process stops at once."""
        if dist.enabled and not sync_point:
            return False
        return dist.any(self.received is not None)

    def interrupted(self, epoch: int, global_step: int, run_dir: Path) -> Interrupted:
        """The error that ends a run stopped with last.pt saved (SIGTERM for ranks that were
        only told by another rank)."""
        signum = self.received or signal.SIGTERM
        return Interrupted(
            f"stopped by {signal_name(signum)} at epoch {epoch}, step {global_step}; last.pt "
            f"saved. Resume with: rnnclf train --resume {run_dir}", exit_code=exit_code(signum))


def exit_code(signum: int) -> int:
    return 128 + int(signum)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def signal_name(signum: int) -> str:
    return "SIGINT" if signum == signal.SIGINT else "SIGTERM"
