"""One epoch of training, the step loop written out: `EpochRunner.train_one_epoch`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rnnclf.accel.fused_gru import release_scratch
from rnnclf.config.schema import Config
from rnnclf.data.batches import Batch, epoch_batches, steps_per_epoch
from rnnclf.data.dataset import EncodedSplit
from rnnclf.data.prefetch import prefetch
from rnnclf.device import autocast_context
from rnnclf.errors import RunFailed
from rnnclf.inference.multilabel_metrics import binary_cross_entropy, exact_rows, is_multi_hot
from rnnclf.training.distributed import SINGLE, DistContext
from rnnclf.training.optimizers import OptimizerGroup, clip_grad_norm
from rnnclf.training.schedule import learning_rate
from rnnclf.training.signals import StopSignal
from rnnclf.training.state import Progress
from rnnclf.training.tensorboard import TensorBoardLog

LOG_EVERY = 20  # steps between progress-bar refreshes (each refresh reads values off the device)


@dataclass
class EpochTotals:
    """Running sums over one epoch, kept on the device so steps never wait for the host."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> EpochTotals:
        return cls(torch.zeros((), device=device, dtype=torch.float64),
                   torch.zeros((), device=device, dtype=torch.int64))

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One step's batch: its mean loss (0-d), logits (B, C) and labels (B,) (or multi-hot
        (B, C): then a row counts as correct when every label is right at 0.5)."""
        batch_size = len(labels)
        self.loss_sum += loss.detach().double() * batch_size
        if is_multi_hot(labels):
            self.correct += exact_rows(logits.detach(), labels)
        else:
            self.correct += (logits.detach().argmax(1) == labels).sum()
        self.seen += batch_size

    def to_state(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum.item(), "correct": int(self.correct.item()),
                "seen": self.seen}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> EpochTotals:
        totals = cls.zeros(device)
        totals.loss_sum += state["loss_sum"]
        totals.correct += state["correct"]
        totals.seen = state["seen"]
        return totals

    def summed_over(self, dist: DistContext) -> EpochTotals:
        """These sums added up over all data-parallel ranks (self when single-process)."""
        if not dist.enabled:
            return self
        sums = dist.all_reduce_sum(torch.stack([  # (3,) float64: exact for counts below 2**53
            self.loss_sum, self.correct.double(),
            torch.tensor(float(self.seen), dtype=torch.float64, device=self.loss_sum.device)]))
        return EpochTotals(sums[0], sums[1].round().long(), int(sums[2].item()))


class NonFiniteTracker:
    """Notes the first step whose loss is NaN/inf without reading it off the device every step."""

    def __init__(self, device: torch.device) -> None:
        self.first_step = torch.full((), -1, device=device, dtype=torch.int64)
        self.first_loss = torch.zeros((), device=device, dtype=torch.float32)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        fresh = ~torch.isfinite(loss.detach()) & (self.first_step < 0)
        self.first_step = torch.where(fresh, step, self.first_step)
        self.first_loss = torch.where(fresh, loss.detach().float(), self.first_loss)

    def check(self, epoch: int) -> None:
        """Raise RunFailed if any observed step was non-finite (one host sync)."""
        step = int(self.first_step.item())
        if step >= 0:
            raise RunFailed(
                f"the training loss became {self.first_loss.item()} at epoch {epoch}, step "
                f"{step}; the run stopped without saving that state, so best.pt/last.pt keep the "
                "last good one. Lower optim.lr, set optim.grad_clip, or set "
                "optim.skip_nonfinite=true to skip such steps")


class StepReport:
    """The progress bar and TensorBoard's step curves. `show` reads the running sums off the
    device, so the loop calls it only every LOG_EVERY steps."""

    def __init__(self, bar: Any, tensorboard: TensorBoardLog | None, seen_at_start: int) -> None:
        self.bar, self.tensorboard = bar, tensorboard
        self.started, self.seen_at_start = time.perf_counter(), seen_at_start

    def rate(self, seen: int) -> float:
        """Samples per second trained since this report started (`seen`: the sum so far)."""
        return (seen - self.seen_at_start) / max(1e-9, time.perf_counter() - self.started)

    def show(self, totals: EpochTotals, global_step: int, lr: float) -> None:
        if not totals.seen:
            return
        loss_sum, correct = totals.loss_sum.item(), int(totals.correct.item())
        rate = self.rate(totals.seen)
        self.bar.set_postfix(loss=f"{loss_sum / totals.seen:.4f}",
                             acc=f"{correct / totals.seen:.4f}", samples_s=f"{rate:.0f}",
                             refresh=False)
        if self.tensorboard is not None:
            self.tensorboard.log_step(global_step, loss_sum, correct, totals.seen, lr, rate)


@dataclass
class EpochResult:
    totals: EpochTotals  # the epoch's sums over all ranks (the resumed part included)
    stopped: bool  # a signal stopped the epoch early; progress.totals holds its sums
    samples_per_s: float  # samples trained by this call over its wall time (all ranks)


def _forward_loss(model: nn.Module, batch: Batch, label_smoothing: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(batch.tokens, batch.lengths)  # (B, C)
    if is_multi_hot(batch.labels):  # data.multi_label: sigmoid + binary cross-entropy
        return binary_cross_entropy(logits, batch.labels, label_smoothing), logits
    loss = F.cross_entropy(logits, batch.labels, label_smoothing=label_smoothing)
    return loss, logits


@dataclass
class EpochRunner:
    """What a training step needs, set up once; `train_one_epoch` runs the steps of one epoch.

    Used by the Trainer and by scripts/bench.py (which measures exactly this loop).
    """

    model: nn.Module  # DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer | OptimizerGroup
    config: Config
    device: torch.device
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling
    dist: DistContext = SINGLE
    stop: StopSignal = field(default_factory=StopSignal)
    tensorboard: TensorBoardLog | None = None
    show_progress: bool = False

    def train_one_epoch(self, split: EncodedSplit, progress: Progress, total_steps: int
                        ) -> EpochResult:
        """Train on one epoch's batches from `progress.step_in_epoch` on (under DDP, this rank's
        share), advancing `progress`. A signal ends it early with progress.totals set.

        Batches are collated (and pinned, for CUDA) on a background thread; the loop never waits
        for the device except every LOG_EVERY steps (and on every step with fp16 loss scaling or
        optim.skip_nonfinite).
        """
        config, optimizer = self.config, self.optimizer
        self.model.train()
        totals = EpochTotals.from_state(progress.totals, self.device)
        steps = steps_per_epoch(len(split), config.train.batch_size,
                                world_size=self.dist.world_size)
        batches = self._batches(split, progress)
        report = StepReport(self._bar(steps, progress), self.tensorboard, totals.seen)
        nonfinite = NonFiniteTracker(self.device)
        stopping = False
        try:
            for batch in batches:
                batch = batch.to(self.device, non_blocking=True)
                # This step's learning rate: the warm-up, then the schedule.
                lr = learning_rate(progress.global_step, total_steps, config.optim)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                # Forward pass and loss (under autocast for bf16/fp16).
                with autocast_context(config.train.precision, self.device):
                    loss, logits = _forward_loss(self.model, batch, config.optim.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                # The batch is used up whatever happens next: a resume skips it.
                progress.step_in_epoch += 1
                progress.global_step += 1
                report.bar.update(1)
                # Backward, clip, update; a skipped step adds nothing to the epoch's sums.
                if self._backward_and_step(loss):
                    nonfinite.observe(loss, progress.global_step)
                    totals.add(loss, logits, batch.labels)
                else:
                    progress.skipped_steps += 1
                # Every LOG_EVERY steps: ranks agree on a stop, NaN check, bar and TensorBoard.
                sync_point = progress.step_in_epoch % LOG_EVERY == 0 \
                    or progress.step_in_epoch == steps
                stopping = self.stop.agreed(self.dist, sync_point)
                if sync_point or stopping:
                    nonfinite.check(progress.epoch + 1)
                    report.show(totals, progress.global_step, lr)
                # A signal: stop after this step; the caller saves last.pt.
                if stopping:
                    break
            nonfinite.check(progress.epoch + 1)  # before anything of this epoch is evaluated
        finally:
            report.bar.close()
            release_scratch()  # the evaluation that follows needs the memory more
        summed = totals.summed_over(self.dist)
        if stopping:
            progress.totals = summed.to_state()
        return EpochResult(summed, stopping, report.rate(summed.seen))

    def _batches(self, split: EncodedSplit, progress: Progress) -> Iterator[Batch]:
        """This rank's batches from progress.step_in_epoch on, collated ahead in the background."""
        train, dist = self.config.train, self.dist
        return prefetch(epoch_batches(split, train.batch_size, self.config.data.max_length,
                                      train.seed, progress.epoch, progress.step_in_epoch,
                                      dist.rank, dist.world_size),
                        train.prefetch_batches,
                        Batch.pin_memory if self.device.type == "cuda" else None)

    def _bar(self, steps: int, progress: Progress) -> Any:
        return tqdm(total=steps, initial=progress.step_in_epoch,
                    desc=f"epoch {progress.epoch + 1}", disable=not self.show_progress,
                    leave=False, dynamic_ncols=True)

    def _backward_and_step(self, loss: torch.Tensor) -> bool:
        """Backward pass, clipping and the optimizer step; False when the step was skipped."""
        optim, model, optimizer, scaler = self.config.optim, self.model, self.optimizer, self.scaler
        if optim.skip_nonfinite and not bool(torch.isfinite(loss.detach())):  # host sync, opt-in
            return False
        if scaler is not None:
            scaler.scale(loss).backward()
            if optim.grad_clip > 0:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                clip_grad_norm(model.parameters(), optim.grad_clip)
            scaler.step(optimizer)  # skips the step itself when a gradient overflowed
            scaler.update()
            return True
        loss.backward()
        grad_norm = clip_grad_norm(model.parameters(), optim.grad_clip) \
            if optim.grad_clip > 0 else None
        if optim.skip_nonfinite and grad_norm is not None and not bool(torch.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            return False
        optimizer.step()
        return True
