"""TensorBoard logging of a run (train.tensorboard: true) into runs/<name>/tb/.

Per step (every LOG_EVERY steps, when the training loop reads its running sums off the device
anyway, so logging adds no host syncs): step/loss and step/accuracy over the steps since the last
log, step/lr and step/samples_per_s. Per epoch: every number of metrics.jsonl under epoch/.
The resolved config goes in as hyperparameters (the HPARAMS tab), scored by epoch/val_acc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnclf.config.schema import Config
from rnnclf.errors import RnnclfError

INSTALL_HINT = "pip install 'rnnclf[tensorboard]'"
FOLDER = "tb"
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "samples_per_s",
                 "seconds")


def flat_hparams(config: Config) -> dict[str, bool | int | float | str]:
    """{'model.cell': 'gru', ...}: the values TensorBoard's hparams plugin accepts (a list
    field as its text, e.g. "['tensorboard']")."""
    return {f"{section}.{key}": str(value) if isinstance(value, list) else value
            for section, values in config.to_dict().items() for key, value in values.items()}


class TensorBoardLog:
    """A SummaryWriter on runs/<name>/tb/ with the step and epoch scalars of one run."""

    def __init__(self, run_dir: Path, config: Config, start_step: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError:
            raise RnnclfError(f"train.tensorboard=true needs the tensorboard package; "
                              f"{INSTALL_HINT}, or set train.tensorboard=false") from None
        folder = run_dir / FOLDER
        if start_step == 0 and folder.is_dir():  # a new run (or --overwrite): drop old events
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink(missing_ok=True)
        # purge_step: a resumed run hides events a killed run logged after its last checkpoint.
        self.writer = SummaryWriter(str(folder),
                                    purge_step=start_step if start_step > 0 else None)
        if start_step == 0:
            experiment, start, end = hparams(flat_hparams(config),
                                             {"epoch/val_acc": 0.0, "epoch/val_loss": 0.0})
            for summary in (experiment, start, end):
                self.writer.file_writer.add_summary(summary)
        self._last: tuple[float, int, int] = (0.0, 0, 0)  # loss_sum, correct, seen at last log

    def log_step(self, step: int, loss_sum: float, correct: int, seen: int, lr: float,
                 samples_per_s: float) -> None:
        """Running epoch sums (already on the host) -> means since the previous call."""
        last_loss, last_correct, last_seen = self._last
        if seen < last_seen:  # a new epoch restarted the sums
            last_loss, last_correct, last_seen = 0.0, 0, 0
        interval = seen - last_seen
        if interval > 0:
            self.writer.add_scalar("step/loss", (loss_sum - last_loss) / interval, step)
            self.writer.add_scalar("step/accuracy", (correct - last_correct) / interval, step)
        self.writer.add_scalar("step/lr", lr, step)
        self.writer.add_scalar("step/samples_per_s", samples_per_s, step)
        self._last = (loss_sum, correct, seen)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record, at its epoch number; flushed so a crash loses little."""
        for name in EPOCH_METRICS:
            if name in record:
                self.writer.add_scalar(f"epoch/{name}", record[name], record["epoch"])
        self._last = (0.0, 0, 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
