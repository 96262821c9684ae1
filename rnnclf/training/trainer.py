"""The training loop, written out: train_one_epoch, evaluate, fit."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rnnclf.accel.fused_gru import release_scratch
from rnnclf.config.schema import Config, from_saved_dict, to_yaml
from rnnclf.data.batches import Batch, epoch_batches, eval_batches, eval_order, steps_per_epoch
from rnnclf.data.dataset import (
    EncodedSplit,
    TrainingData,
    prepare_training_data,
    resolve_data_dir,
)
from rnnclf.data.prefetch import prefetch
from rnnclf.data.word_vectors import check_spec, extra_vocabulary, load_pretrained
from rnnclf.device import autocast_context, make_grad_scaler, resolve_device
from rnnclf.errors import Interrupted, RnnclfError, RunFailed, StoppedAtOnce
from rnnclf.models.build import build_model, build_optimizer, learning_rate, uses_sparse_embedding
from rnnclf.models.classifier import count_parameters
from rnnclf.models.ngrams import ngram_table_rows
from rnnclf.runs.atomic import append_jsonl, atomic_write_text, read_jsonl, write_json
from rnnclf.runs.checkpoint import load_checkpoint, save_checkpoint
from rnnclf.runs.folder import claim_run_folder, run_directory
from rnnclf.training import plots
from rnnclf.training.distributed import (
    SINGLE,
    DistContext,
    dump_state_for_tests,
    evaluate_sharded,
    wrap_model,
)
from rnnclf.training.optimizers import OptimizerGroup, clip_grad_norm
from rnnclf.training.tensorboard import TensorBoardLog

LOG_EVERY = 20  # steps between progress-bar refreshes (each refresh reads values off the device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


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


@dataclass
class Progress:
    """Where a run stands; everything here goes into last.pt so a resume can continue."""

    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # batches of that epoch already trained on
    global_step: int = 0
    best_val_acc: float = -1.0  # val accuracy of the best epoch (chosen by train.select_by)
    best_val_loss: float = float("inf")  # val loss of the best epoch
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    skipped_steps: int = 0  # steps of this epoch skipped for a non-finite loss or gradient
    pretrained_coverage: float | None = None  # share of the vocabulary the word vectors covered
    totals: dict[str, Any] = field(default_factory=lambda: {"loss_sum": 0.0, "correct": 0,
                                                             "seen": 0})


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
                raise StoppedAtOnce(_exit_code(signum))
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


def _exit_code(signum: int) -> int:
    return 128 + int(signum)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def _signal_name(signum: int) -> str:
    return "SIGINT" if signum == signal.SIGINT else "SIGTERM"


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


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _forward_loss(model: nn.Module, batch: Batch, label_smoothing: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(batch.tokens, batch.lengths)  # (B, C)
    loss = F.cross_entropy(logits, batch.labels, label_smoothing=label_smoothing)
    return loss, logits


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer | OptimizerGroup,
                    config: Config, split: EncodedSplit, device: torch.device,
                    progress: Progress, total_steps: int, stop: StopSignal, save_last: Any,
                    scaler: torch.amp.GradScaler | None = None,
                    tensorboard: TensorBoardLog | None = None,
                    dist: DistContext = SINGLE) -> EpochTotals:
    """Train on one epoch's batches from `progress.step_in_epoch` on; returns the epoch's sums
    (over all ranks). Under DDP, `model` is the wrapped model and this rank trains its share.

    Batches are collated (and pinned, for CUDA) on a background thread; the loop never waits
    for the device except every LOG_EVERY steps (and on every step with fp16 loss scaling or
    optim.skip_nonfinite).
    """
    model.train()
    totals = EpochTotals.from_state(progress.totals, device)
    steps = steps_per_epoch(len(split), config.train.batch_size, world_size=dist.world_size)
    batches = prefetch(epoch_batches(split, config.train.batch_size, config.data.max_length,
                                     config.train.seed, progress.epoch, progress.step_in_epoch,
                                     dist.rank, dist.world_size),
                       config.train.prefetch_batches,
                       Batch.pin_memory if device.type == "cuda" else None)
    bar = tqdm(total=steps, initial=progress.step_in_epoch, desc=f"epoch {progress.epoch + 1}",
               disable=not config.train.progress or not dist.is_main, leave=False,
               dynamic_ncols=True)
    started, seen_at_start = time.perf_counter(), totals.seen
    nonfinite = NonFiniteTracker(device)
    skip_nonfinite = config.optim.skip_nonfinite
    try:
        for batch in batches:
            batch = batch.to(device, non_blocking=True)
            lr = learning_rate(progress.global_step, total_steps, config.optim)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast_context(config.train.precision, device):
                loss, logits = _forward_loss(model, batch, config.optim.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            progress.step_in_epoch += 1  # the batch is used up either way: a resume skips it
            progress.global_step += 1
            bar.update(1)
            if skip_nonfinite and not bool(torch.isfinite(loss.detach())):  # host sync, opt-in
                progress.skipped_steps += 1
            elif _backward_and_step(loss, model, optimizer, config, scaler, skip_nonfinite):
                nonfinite.observe(loss, progress.global_step)
                batch_size = len(batch.labels)
                totals.loss_sum += loss.detach().double() * batch_size
                totals.correct += (logits.detach().argmax(1) == batch.labels).sum()
                totals.seen += batch_size
            else:
                progress.skipped_steps += 1
            log_step = progress.step_in_epoch % LOG_EVERY == 0 or progress.step_in_epoch == steps
            if dist.enabled:  # ranks agree every LOG_EVERY steps, so all stop after the same step
                stopping = log_step and dist.any(stop.received is not None)
            else:
                stopping = stop.received is not None
            if log_step or stopping:
                nonfinite.check(progress.epoch + 1)
                if totals.seen:
                    loss_sum, correct = totals.loss_sum.item(), int(totals.correct.item())
                    rate = (totals.seen - seen_at_start) / max(1e-9, time.perf_counter() - started)
                    bar.set_postfix(loss=f"{loss_sum / totals.seen:.4f}",
                                    acc=f"{correct / totals.seen:.4f}",
                                    samples_s=f"{rate:.0f}", refresh=False)
                    if tensorboard is not None:
                        tensorboard.log_step(progress.global_step, loss_sum, correct, totals.seen,
                                             lr, rate)
            if stopping:
                progress.totals = totals.summed_over(dist).to_state()
                save_last()
                dist.barrier()  # last.pt is written before any rank exits (torchrun ends the rest)
                signum = stop.received or signal.SIGTERM  # ranks without a signal were told
                raise Interrupted(f"stopped by {_signal_name(signum)} at epoch "
                                  f"{progress.epoch + 1}, step {progress.global_step}; last.pt "
                                  "saved", exit_code=_exit_code(signum))
        nonfinite.check(progress.epoch + 1)  # before anything of this epoch is evaluated or saved
    finally:
        bar.close()
        release_scratch()  # the evaluation that follows needs the memory more
    return totals.summed_over(dist)


def _backward_and_step(loss: torch.Tensor, model: nn.Module,
                       optimizer: torch.optim.Optimizer | OptimizerGroup, config: Config,
                       scaler: torch.amp.GradScaler | None, skip_nonfinite: bool) -> bool:
    """Backward pass, clipping and the optimizer step; False when the step was skipped."""
    clip = config.optim.grad_clip
    if scaler is not None:
        scaler.scale(loss).backward()
        if clip > 0:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            clip_grad_norm(model.parameters(), clip)
        scaler.step(optimizer)  # skips the step itself when a gradient overflowed
        scaler.update()
        return True
    loss.backward()
    grad_norm = clip_grad_norm(model.parameters(), clip) if clip > 0 else None
    if skip_nonfinite and grad_norm is not None and not bool(torch.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True


@torch.inference_mode()
def predict_split(model: nn.Module, split: EncodedSplit, batch_size: int, max_length: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) for every row, in the split's row order; and the per-row labels."""
    model.eval()
    # Logits stay on the device until the end: one copy back instead of one sync per batch.
    chunks = [model(batch.tokens.to(device, non_blocking=True), batch.lengths).float()
              for batch in eval_batches(split, batch_size, max_length)]
    logits = torch.cat(chunks).cpu()
    ordered = torch.empty_like(logits)
    ordered[eval_order(split, max_length)] = logits
    return ordered, split.labels


def evaluate(model: nn.Module, split: EncodedSplit, batch_size: int, max_length: int,
             device: torch.device, dist: DistContext = SINGLE) -> dict[str, float]:
    if dist.enabled:  # each rank scores a share; all get the whole split's numbers
        return evaluate_sharded(model, split, batch_size, max_length, dist)
    logits, labels = predict_split(model, split, batch_size, max_length, device)
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    return {"loss": loss, "accuracy": accuracy}


def _reconcile_metrics(run_dir: Path, progress: Progress, last_record: dict[str, Any] | None
                       ) -> None:
    """Make metrics.jsonl agree with last.pt before a resume appends to it.

    A kill can land between saving last.pt and appending that epoch's line (the line is then
    missing; last.pt carries a copy), or in the middle of the append (a torn line, which the next
    append would glue onto). Rewriting the file atomically from its whole records fixes both.
    """
    path = run_dir / "metrics.jsonl"
    records = read_jsonl(path) if path.is_file() else []
    kept = [r for r in records if isinstance(r, dict) and r.get("epoch", 0) <= progress.epoch]
    epochs = {r.get("epoch") for r in kept}
    if last_record is not None and last_record.get("epoch") not in epochs \
            and last_record.get("epoch") == progress.epoch:
        kept.append(last_record)
    text = "".join(json.dumps(record) + "\n" for record in kept)
    if not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text:
        atomic_write_text(path, text)


def _interrupted(signum: int, progress: Progress, run_dir: Path) -> Interrupted:
    return Interrupted(
        f"stopped by {_signal_name(signum)} at epoch {progress.epoch + 1}, step "
        f"{progress.global_step}; last.pt saved. Resume with: rnnclf train --resume {run_dir}",
        exit_code=_exit_code(signum))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _quiet(*args: Any, **kwargs: Any) -> None:
    """The log of data-parallel ranks other than 0: only rank 0 prints."""


def fit(config: Config, overwrite: bool = False, resume_dir: Path | None = None,
        log: Any = print, dist: DistContext = SINGLE) -> dict[str, Any]:
    """Train `config`, writing runs/<name>/; returns the summary. Resumes from `resume_dir`.

    Under torchrun, `dist` places this process in the run (rnnclf.training.distributed.session);
    every rank calls fit() and trains its share of the batches, and only rank 0 prints and writes
    files."""
    with contextlib.ExitStack() as run_folder_claim:  # released (and settled) however fit ends
        return _fit(config, overwrite, resume_dir, log, dist, run_folder_claim)


def _fit(config: Config, overwrite: bool, resume_dir: Path | None, log: Any, dist: DistContext,
         run_folder_claim: contextlib.ExitStack) -> dict[str, Any]:
    if not dist.is_main:
        log = _quiet
    if config.model.pretrained_embeddings:  # missing vectors fail before any run folder
        check_spec(config.model.pretrained_embeddings, config.model.embedding_dim)
    elif config.model.pretrained_vocab:
        raise RnnclfError("model.pretrained_vocab adds words of the pretrained vectors, but "
                          "model.pretrained_embeddings is empty; set both, or "
                          "model.pretrained_vocab=0")
    if resume_dir is None:
        config.data.dir = str(resolve_data_dir(config.data))  # runs stay valid from any cwd
    run_dir = resume_dir if resume_dir is not None else run_directory(config)
    # Rank 0 owns the folder (lock; --overwrite sets the old run aside) before any rank goes on.
    folder = dist.main_only(lambda: run_folder_claim.enter_context(
        claim_run_folder(run_dir, overwrite, resuming=resume_dir is not None)))
    resume_state: dict[str, Any] | None = None
    if resume_dir is not None:
        resume_state = load_checkpoint(resume_dir / "last.pt")
        saved_world_size = resume_state.get("world_size", 1)
        if saved_world_size != dist.world_size:
            raise RnnclfError(f"{run_dir} was trained in {saved_world_size} process(es), this run "
                              f"has {dist.world_size}; resume with the same number (--nproc "
                              f"{saved_world_size}) so its batches and lr schedule line up")
    if dist.enabled and config.optim.skip_nonfinite:
        # A rank that skips its backward pass would leave the others waiting in DDP's all-reduce.
        raise RnnclfError("optim.skip_nonfinite cannot be used with data-parallel training; set "
                          "optim.skip_nonfinite=false or train in one process")
    if config.train.num_threads > 0:
        torch.set_num_threads(config.train.num_threads)
    device = dist.device if dist.enabled else resolve_device(config.train.device)
    seed_everything(config.train.seed)

    started = time.perf_counter()
    # Under DDP the first process builds the vocabulary and cache; the others then load it.
    data: TrainingData = dist.main_first(lambda: prepare_training_data(
        config.data, extra_words=extra_vocabulary(config.model)))
    log(f"data: {len(data.train)} train / {len(data.val)} val rows, vocabulary {len(data.vocab)}"
        + (f", {data.skipped_rows} bad rows skipped" if data.skipped_rows else "")
        + f" ({time.perf_counter() - started:.1f} s)")
    if config.model.ngram_order and resume_state is None:  # a resumed run keeps its saved size
        rows = ngram_table_rows(config.model.ngram_buckets, config.model.ngram_order,
                                data.train.lengths, config.data.max_length)
        if rows < config.model.ngram_buckets:
            log(f"n-gram table: {rows:,} rows, not {config.model.ngram_buckets:,}: the training "
                f"split holds only {rows:,} n-gram positions (saved as model.ngram_buckets)")
            config.model.ngram_buckets = rows
    sparse = uses_sparse_embedding(config.optim)
    if sparse and dist.enabled and device.type == "cuda":
        # NCCL cannot all-reduce sparse gradients (gloo, on the CPU, can): dense tables there.
        sparse = False
        log("data-parallel on CUDA: optim.sparse_embedding is ignored (NCCL needs dense "
            "gradients); the embedding tables are updated by AdamW")
    model = build_model(config.model, len(data.vocab), len(data.label_names),
                        sparse_embedding=sparse).to(device)
    optimizer = build_optimizer(config.optim, model)
    scaler = make_grad_scaler(config.train.precision, device)
    progress = Progress()
    if resume_state is not None:
        if list(resume_state["vocab"]) != data.vocab.itos:
            raise RnnclfError(f"the training data changed since {run_dir} started (its vocabulary "
                              f"differs), so it cannot be resumed; restore {config.data.dir}/"
                              f"{config.data.train_file} or start a new run")
        try:
            model.load_state_dict(resume_state["model_state"])
            optimizer.load_state_dict(resume_state["optimizer_state"])
            progress = Progress(**resume_state["progress"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise RnnclfError(f"{run_dir}/last.pt cannot be resumed ({first_line[:160]}); the "
                              "file is damaged or was edited") from None
        if scaler is not None and "scaler_state" in resume_state:
            scaler.load_state_dict(resume_state["scaler_state"])
        if not dist.is_main:  # last.pt holds all ranks' sums; rank 0 alone carries them on
            progress.totals = Progress().totals
        _set_rng_state(resume_state["rng"])
        if dist.is_main:
            _reconcile_metrics(run_dir, progress, resume_state.get("last_epoch_record"))
        if progress.epoch >= config.train.epochs:
            log(f"{run_dir} already finished {progress.epoch} epochs; to train longer, resume "
                f"with train.epochs=N (N > {progress.epoch})")
        else:
            log(f"resuming {run_dir} at epoch {progress.epoch + 1}, step {progress.global_step}")
    else:
        if config.model.pretrained_embeddings:  # before config.yaml: a bad file leaves no run
            progress.pretrained_coverage = load_pretrained(
                model.embedding, config.model.pretrained_embeddings, data.vocab)
            log(f"pretrained embeddings: {config.model.pretrained_embeddings} covered "
                f"{progress.pretrained_coverage:.1%} of the vocabulary"
                f"{' (frozen)' if config.model.freeze_embeddings else ''}")
        if dist.is_main:
            atomic_write_text(run_dir / "config.yaml", to_yaml(config))
    log(f"model: {config.model.cell} x{config.model.num_layers}"
        f"{' bidirectional' if config.model.bidirectional else ''}"
        f"{f' + n-grams 1..{config.model.ngram_order}' if config.model.ngram_order else ''}, "
        f"{count_parameters(model):,} parameters, device {device}")
    if dist.enabled:
        log(f"data-parallel: {dist.world_size} processes, batch {config.train.batch_size} per "
            f"process ({config.train.batch_size * dist.world_size} per step)")
    train_model = wrap_model(model, dist)  # DDP under torchrun; `model` keeps plain state dicts

    # Steps per rank: under DDP each rank runs 1/world_size of the batches, and so does the lr.
    steps = steps_per_epoch(len(data.train), config.train.batch_size,
                            world_size=dist.world_size)
    total_steps = steps * config.train.epochs
    state_common = {"config": config.to_dict(), "vocab": data.vocab.itos,
                    "label_names": data.label_names, "world_size": dist.world_size}

    # The newest metrics.jsonl line, kept in last.pt so a resume can restore it (see above).
    last_record = resume_state.get("last_epoch_record") if resume_state is not None else None

    def checkpoint_state(for_resume: bool = True) -> dict[str, Any]:
        """last.pt (for_resume) also holds the optimizer and loss-scaler state; best.pt, which
        is for eval/predict/export, does not (with Adam that is twice the model's size)."""
        if not _all_finite(model):  # e.g. the last step's update overflowed; never save NaN
            # At an epoch's end `epoch` already counts the finished epoch and step_in_epoch is 0.
            epoch = progress.epoch + 1 if progress.step_in_epoch else progress.epoch
            raise RunFailed(f"the model's weights became NaN/inf at epoch {epoch}, step "
                            f"{progress.global_step}; nothing was saved from this state, so "
                            "best.pt/last.pt keep the last good one. Lower optim.lr or set "
                            "optim.grad_clip")
        state = {**state_common, "model_state": model.state_dict(),
                 "progress": vars(progress).copy(), "rng": _rng_state(),
                 "last_epoch_record": last_record}
        if for_resume:
            state["optimizer_state"] = optimizer.state_dict()
            if scaler is not None:
                state["scaler_state"] = scaler.state_dict()
        return state

    def save_last() -> None:
        if dist.is_main:
            save_checkpoint(run_dir / "last.pt", checkpoint_state())

    stop = StopSignal()
    stopped_early = False
    tensorboard = (TensorBoardLog(run_dir, config, progress.global_step)
                   if config.train.tensorboard and dist.is_main else None)
    with stop.installed(), (contextlib.closing(tensorboard) if tensorboard is not None
                            else contextlib.nullcontext()):
        while progress.epoch < config.train.epochs:
            epoch_started = time.perf_counter()
            seen_before = progress.totals["seen"]  # a resumed epoch: samples trained before
            try:
                totals = train_one_epoch(train_model, optimizer, config, data.train, device,
                                         progress, total_steps, stop, save_last, scaler,
                                         tensorboard, dist)
            except Interrupted:
                signum = stop.received or signal.SIGTERM
                raise _interrupted(signum, progress, run_dir) from None
            train_seconds = time.perf_counter() - epoch_started
            val = evaluate(model, data.val, config.train.eval_batch_size, config.data.max_length,
                           device, dist)
            record = {
                "epoch": progress.epoch + 1, "step": progress.global_step,
                "train_loss": totals.loss_sum.item() / max(1, totals.seen),
                "train_acc": totals.correct.item() / max(1, totals.seen),
                "val_loss": val["loss"], "val_acc": val["accuracy"],
                "lr": learning_rate(max(0, progress.global_step - 1), total_steps, config.optim),
                "seconds": time.perf_counter() - epoch_started,
                "samples_per_s": (totals.seen - seen_before) / max(1e-9, train_seconds),
            }
            if progress.skipped_steps:
                record["skipped_steps"] = progress.skipped_steps
                log(f"epoch {record['epoch']}: skipped {record['skipped_steps']} step(s) with a "
                    "non-finite loss or gradient (optim.skip_nonfinite)")
            if totals.seen == 0:
                raise RunFailed(f"every step of epoch {record['epoch']} had a non-finite loss or "
                                "gradient; lower optim.lr or set optim.grad_clip")
            if config.train.select_by == "loss":
                improved = val["loss"] < progress.best_val_loss
            else:
                improved = val["accuracy"] > progress.best_val_acc
            if improved:
                progress.best_val_acc, progress.best_epoch = val["accuracy"], progress.epoch + 1
                progress.best_val_loss = val["loss"]
                progress.epochs_without_improvement = 0
            else:
                progress.epochs_without_improvement += 1
            progress.epoch += 1
            progress.step_in_epoch = 0
            progress.totals = {"loss_sum": 0.0, "correct": 0, "seen": 0}
            progress.skipped_steps = 0
            last_record = record
            if improved and dist.is_main:
                save_checkpoint(run_dir / "best.pt", checkpoint_state(for_resume=False))
                folder.new_best_written()  # --overwrite: the previous run can go now
            save_last()
            if dist.is_main:
                append_jsonl(run_dir / "metrics.jsonl", record)
            if tensorboard is not None:
                tensorboard.log_epoch(record)
            log(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc "
                f"{record['train_acc']:.4f} | val loss {record['val_loss']:.4f} acc "
                f"{record['val_acc']:.4f}{' *' if improved else ''} | "
                f"{record['samples_per_s']:.0f} samples/s, {record['seconds']:.1f} s")
            patience = config.train.early_stopping_patience
            if patience and progress.epochs_without_improvement >= patience:
                stopped_early = progress.epoch < config.train.epochs
                if stopped_early:
                    log(f"early stop: no better val {config.train.select_by} for {patience} "
                        "epochs")
                break
            stop_now = stop.received is not None
            if dist.enabled:
                stop_now = dist.any(stop_now)
            if stop_now and progress.epoch < config.train.epochs:
                # The signal came during evaluation or saving: this epoch is saved whole.
                raise _interrupted(stop.received or signal.SIGTERM, progress, run_dir)
    dist.barrier()  # all ranks leave together, once rank 0 has written its files
    dump_state_for_tests(model, dist)

    summary = {
        "run_dir": str(run_dir), "best_epoch": progress.best_epoch,
        "best_val_acc": progress.best_val_acc, "epochs_run": progress.epoch,
        "stopped_early": stopped_early, "global_step": progress.global_step,
        "parameters": count_parameters(model), "vocab_size": len(data.vocab),
        "pretrained_coverage": progress.pretrained_coverage,
        "train_rows": len(data.train), "val_rows": len(data.val),
        "skipped_rows": data.skipped_rows, "device": str(device),
        "seconds": time.perf_counter() - started,
        "epochs": read_jsonl(run_dir / "metrics.jsonl") if dist.is_main else [],
    }
    if dist.is_main:
        write_json(run_dir / "summary.json", summary)
        plots.try_plot(lambda: plots.plot_curves(summary["epochs"], run_dir / plots.CURVES,
                                                 run_dir.name), log)
    chosen_by = (f"best val loss {progress.best_val_loss:.4f} (accuracy "
                 f"{progress.best_val_acc:.4f}, epoch {progress.best_epoch})"
                 if config.train.select_by == "loss" else
                 f"best val accuracy {progress.best_val_acc:.4f} (epoch {progress.best_epoch})")
    log(f"{chosen_by}; checkpoint {run_dir / 'best.pt'}")
    return summary


# The overrides `--resume` accepts: they change how a run goes on, not what it trains.
RESUMABLE_KEYS = frozenset({"train.epochs", "train.device", "train.num_threads", "train.progress",
                            "train.early_stopping_patience", "train.eval_batch_size",
                            "train.tensorboard"})


def load_resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The saved config of a run, with the few overrides that make sense when resuming."""
    if not (run_dir / "last.pt").is_file():
        raise RnnclfError(f"{run_dir} holds no last.pt to resume from; start a new run instead")
    payload = load_checkpoint(run_dir / "last.pt")
    return from_saved_dict(resume_overrides_applied(payload["config"], overrides),
                           source=f"{run_dir}/last.pt")


def resume_overrides_applied(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`raw` (a saved config) with `overrides`, refusing any key `--resume` cannot change."""
    for text in overrides:
        key = text.partition("=")[0].strip()
        if key not in RESUMABLE_KEYS:
            raise RnnclfError(f"--resume keeps the run's config; {key} cannot change "
                              f"(allowed: {', '.join(sorted(RESUMABLE_KEYS))})")
    from rnnclf.config.schema import apply_overrides

    return apply_overrides(raw, overrides)
