"""The training loop, written out: train_one_epoch, evaluate, fit."""

from __future__ import annotations

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

from rnnclf.checkpoint import load_checkpoint, save_checkpoint
from rnnclf.config import Config, from_dict, to_yaml
from rnnclf.data.agnews import resolve_data_dir
from rnnclf.data.batches import Batch, epoch_batches, eval_batches, eval_order, steps_per_epoch
from rnnclf.data.dataset import EncodedSplit, TrainingData, prepare_training_data
from rnnclf.errors import RnnclfError, RunFailed
from rnnclf.factory import build_model, build_optimizer, learning_rate
from rnnclf.io import append_jsonl, atomic_write_text, read_jsonl, write_json
from rnnclf.model import count_parameters
from rnnclf.pretrained import load_pretrained

RUN_FILES = ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.json", "eval.json")
LOG_EVERY = 20  # steps between progress-bar refreshes (each refresh reads values off the device)


class Interrupted(RnnclfError):
    """Training stopped on SIGINT/SIGTERM after saving last.pt."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RnnclfError(f"train.device={name} but CUDA is not available here; "
                              "use train.device=cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise RnnclfError(f"train.device={name} but only {torch.cuda.device_count()} CUDA "
                              "device(s) exist; pick another index")
    return torch.device(name)


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


@dataclass
class Progress:
    """Where a run stands; everything here goes into last.pt so a resume can continue."""

    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # batches of that epoch already trained on
    global_step: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = -1
    epochs_without_improvement: int = 0
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
                raise KeyboardInterrupt  # second signal: leave now; writes are atomic
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


def _forward_loss(model: nn.Module, batch: Batch, label_smoothing: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(batch.tokens, batch.lengths)  # (B, C)
    loss = F.cross_entropy(logits, batch.labels, label_smoothing=label_smoothing)
    return loss, logits


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, config: Config,
                    split: EncodedSplit, device: torch.device, progress: Progress,
                    total_steps: int, stop: StopSignal, save_last: Any) -> EpochTotals:
    """Train on one epoch's batches from `progress.step_in_epoch` on; returns the epoch's sums."""
    model.train()
    totals = EpochTotals.from_state(progress.totals, device)
    steps = steps_per_epoch(len(split), config.train.batch_size)
    batches = epoch_batches(split, config.train.batch_size, config.data.max_length,
                            config.train.seed, progress.epoch, progress.step_in_epoch)
    bar = tqdm(total=steps, initial=progress.step_in_epoch, desc=f"epoch {progress.epoch + 1}",
               disable=not config.train.progress, leave=False, dynamic_ncols=True)
    started, seen_at_start = time.perf_counter(), totals.seen
    for batch in batches:
        batch = batch.to(device, non_blocking=True)
        lr = learning_rate(progress.global_step, total_steps, config.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, logits = _forward_loss(model, batch, config.optim.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        batch_size = len(batch.labels)
        totals.loss_sum += loss.detach().double() * batch_size
        totals.correct += (logits.detach().argmax(1) == batch.labels).sum()
        totals.seen += batch_size
        progress.step_in_epoch += 1
        progress.global_step += 1
        bar.update(1)
        if progress.step_in_epoch % LOG_EVERY == 0 or stop.received is not None:
            mean_loss = totals.loss_sum.item() / totals.seen
            if mean_loss != mean_loss or mean_loss in (float("inf"), float("-inf")):
                raise RunFailed(f"the training loss became {mean_loss} at epoch "
                                f"{progress.epoch + 1}, step {progress.global_step}; nothing was "
                                "saved from this point. Lower optim.lr or set optim.grad_clip")
            rate = (totals.seen - seen_at_start) / max(1e-9, time.perf_counter() - started)
            bar.set_postfix(loss=f"{mean_loss:.4f}",
                            acc=f"{totals.correct.item() / totals.seen:.4f}",
                            samples_s=f"{rate:.0f}", refresh=False)
        if stop.received is not None:
            progress.totals = totals.to_state()
            save_last()
            bar.close()
            name = "SIGINT" if stop.received == signal.SIGINT else "SIGTERM"
            raise Interrupted(f"stopped by {name} at epoch {progress.epoch + 1}, step "
                              f"{progress.global_step}; last.pt saved. Resume with: rnnclf train "
                              "--resume RUN_DIR",
                              exit_code=130 if stop.received == signal.SIGINT else 143)
    bar.close()
    return totals


@torch.inference_mode()
def predict_split(model: nn.Module, split: EncodedSplit, batch_size: int, max_length: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) for every row, in the split's row order; and the per-row labels."""
    model.eval()
    chunks = [model(batch.tokens.to(device), batch.lengths).float().cpu()
              for batch in eval_batches(split, batch_size, max_length)]
    logits = torch.cat(chunks)
    ordered = torch.empty_like(logits)
    ordered[eval_order(split, max_length)] = logits
    return ordered, split.labels


def evaluate(model: nn.Module, split: EncodedSplit, batch_size: int, max_length: int,
             device: torch.device) -> dict[str, float]:
    logits, labels = predict_split(model, split, batch_size, max_length, device)
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    return {"loss": loss, "accuracy": accuracy}


def run_directory(config: Config) -> Path:
    return Path(config.train.runs_dir).expanduser() / config.train.name


def _prepare_run_directory(run_dir: Path, overwrite: bool) -> None:
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise RnnclfError(f"{run_dir} already holds a run ({', '.join(existing)}); pass --resume "
                          f"{run_dir} to continue it, --overwrite to replace it, or choose "
                          "another train.name")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in existing:
            (run_dir / name).unlink()
    except OSError as error:
        raise RnnclfError(f"cannot write to run folder {run_dir}: {error.strerror}; choose "
                          "another train.runs_dir") from None


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


def fit(config: Config, overwrite: bool = False, resume_dir: Path | None = None,
        log: Any = print) -> dict[str, Any]:
    """Train `config`, writing runs/<name>/; returns the summary. Resumes from `resume_dir`."""
    resume_state: dict[str, Any] | None = None
    if resume_dir is not None:
        resume_state = load_checkpoint(resume_dir / "last.pt")
        run_dir = resume_dir
    else:
        config.data.dir = str(resolve_data_dir(config.data.dir))  # runs stay valid from any cwd
        run_dir = run_directory(config)
        _prepare_run_directory(run_dir, overwrite)
    if config.train.num_threads > 0:
        torch.set_num_threads(config.train.num_threads)
    device = resolve_device(config.train.device)
    seed_everything(config.train.seed)

    started = time.perf_counter()
    data: TrainingData = prepare_training_data(config.data)
    log(f"data: {len(data.train)} train / {len(data.val)} val rows, vocabulary {len(data.vocab)}"
        + (f", {data.skipped_rows} bad rows skipped" if data.skipped_rows else "")
        + f" ({time.perf_counter() - started:.1f} s)")
    model = build_model(config.model, len(data.vocab), len(data.label_names)).to(device)
    optimizer = build_optimizer(config.optim, model)
    progress = Progress()
    if resume_state is not None:
        model.load_state_dict(resume_state["model_state"])
        optimizer.load_state_dict(resume_state["optimizer_state"])
        progress = Progress(**resume_state["progress"])
        _set_rng_state(resume_state["rng"])
        log(f"resuming {run_dir} at epoch {progress.epoch + 1}, step {progress.global_step}")
    else:
        if config.model.pretrained_embeddings:  # before config.yaml: a bad file leaves no run
            progress.pretrained_coverage = load_pretrained(
                model.embedding, Path(config.model.pretrained_embeddings), data.vocab)
            log(f"pretrained embeddings: {config.model.pretrained_embeddings} covered "
                f"{progress.pretrained_coverage:.1%} of the vocabulary"
                f"{' (frozen)' if config.model.freeze_embeddings else ''}")
        atomic_write_text(run_dir / "config.yaml", to_yaml(config))
    log(f"model: {config.model.cell} x{config.model.num_layers}"
        f"{' bidirectional' if config.model.bidirectional else ''}, "
        f"{count_parameters(model):,} parameters, device {device}")

    steps = steps_per_epoch(len(data.train), config.train.batch_size)
    total_steps = steps * config.train.epochs
    state_common = {"config": config.to_dict(), "vocab": data.vocab.itos,
                    "label_names": data.label_names}

    def checkpoint_state() -> dict[str, Any]:
        return {**state_common, "model_state": model.state_dict(),
                "optimizer_state": optimizer.state_dict(), "progress": vars(progress).copy(),
                "rng": _rng_state()}

    def save_last() -> None:
        save_checkpoint(run_dir / "last.pt", checkpoint_state())

    stop = StopSignal()
    stopped_early = False
    with stop.installed():
        while progress.epoch < config.train.epochs:
            epoch_started = time.perf_counter()
            totals = train_one_epoch(model, optimizer, config, data.train, device, progress,
                                     total_steps, stop, save_last)
            train_seconds = time.perf_counter() - epoch_started
            val = evaluate(model, data.val, config.train.eval_batch_size, config.data.max_length,
                           device)
            record = {
                "epoch": progress.epoch + 1, "step": progress.global_step,
                "train_loss": totals.loss_sum.item() / max(1, totals.seen),
                "train_acc": totals.correct.item() / max(1, totals.seen),
                "val_loss": val["loss"], "val_acc": val["accuracy"],
                "lr": learning_rate(max(0, progress.global_step - 1), total_steps, config.optim),
                "seconds": time.perf_counter() - epoch_started,
                "samples_per_s": totals.seen / max(1e-9, train_seconds),
            }
            improved = val["accuracy"] > progress.best_val_acc
            if improved:
                progress.best_val_acc, progress.best_epoch = val["accuracy"], progress.epoch + 1
                progress.epochs_without_improvement = 0
            else:
                progress.epochs_without_improvement += 1
            progress.epoch += 1
            progress.step_in_epoch = 0
            progress.totals = {"loss_sum": 0.0, "correct": 0, "seen": 0}
            if improved:
                save_checkpoint(run_dir / "best.pt", checkpoint_state())
            save_last()
            append_jsonl(run_dir / "metrics.jsonl", record)
            log(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc "
                f"{record['train_acc']:.4f} | val loss {record['val_loss']:.4f} acc "
                f"{record['val_acc']:.4f}{' *' if improved else ''} | "
                f"{record['samples_per_s']:.0f} samples/s, {record['seconds']:.1f} s")
            patience = config.train.early_stopping_patience
            if patience and progress.epochs_without_improvement >= patience:
                stopped_early = progress.epoch < config.train.epochs
                if stopped_early:
                    log(f"early stop: no better val accuracy for {patience} epochs")
                break

    summary = {
        "run_dir": str(run_dir), "best_epoch": progress.best_epoch,
        "best_val_acc": progress.best_val_acc, "epochs_run": progress.epoch,
        "stopped_early": stopped_early, "global_step": progress.global_step,
        "parameters": count_parameters(model), "vocab_size": len(data.vocab),
        "pretrained_coverage": progress.pretrained_coverage,
        "train_rows": len(data.train), "val_rows": len(data.val),
        "skipped_rows": data.skipped_rows, "device": str(device),
        "seconds": time.perf_counter() - started,
        "epochs": read_jsonl(run_dir / "metrics.jsonl"),
    }
    write_json(run_dir / "summary.json", summary)
    log(f"best val accuracy {progress.best_val_acc:.4f} (epoch {progress.best_epoch}); "
        f"checkpoint {run_dir / 'best.pt'}")
    return summary


def load_resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The saved config of a run, with the few overrides that make sense when resuming."""
    allowed = {"train.epochs", "train.device", "train.num_threads", "train.progress",
               "train.early_stopping_patience", "train.eval_batch_size"}
    if not (run_dir / "last.pt").is_file():
        raise RnnclfError(f"{run_dir} holds no last.pt to resume from; start a new run instead")
    payload = load_checkpoint(run_dir / "last.pt")
    raw = payload["config"]
    for text in overrides:
        key = text.partition("=")[0].strip()
        if key not in allowed:
            raise RnnclfError(f"--resume keeps the run's config; {key} cannot change "
                              f"(allowed: {', '.join(sorted(allowed))})")
    from rnnclf.config import apply_overrides

    return from_dict(apply_overrides(raw, overrides), source=f"{run_dir}/last.pt")
