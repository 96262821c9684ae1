"""A training run: the Trainer (setup, the epochs, the end of each epoch, finish) and fit().

The steps of one epoch are in rnnclf.training.epoch; what a run saves, in rnnclf.training.state.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from rnnclf.accel.backend import describe_backend, select_backend
from rnnclf.config import Config
from rnnclf.data.batches import steps_per_epoch
from rnnclf.data.dataset import TrainingData, prepare_training_data, resolve_data_dir
from rnnclf.data.multilabel import check_config as check_multilabel_config
from rnnclf.data.word_vectors import check_spec, extra_vocabulary, load_pretrained
from rnnclf.device import make_grad_scaler, resolve_device
from rnnclf.errors import Interrupted, RnnclfError, RunFailed
from rnnclf.inference.scoring import evaluate
from rnnclf.models.build import build_model, uses_sparse_embedding
from rnnclf.models.classifier import count_parameters
from rnnclf.models.ngrams import ngram_table_rows
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.runs.folder import RunFolder, claim_run_folder, run_directory
from rnnclf.training.distributed import (
    SINGLE,
    DistContext,
    dump_state_for_tests,
    evaluate_sharded,
    wrap_model,
)
from rnnclf.training.epoch import EpochResult, EpochRunner
from rnnclf.training.mlflow_logger import MlflowLog, require_mlflow
from rnnclf.training.optimizers import OptimizerGroup, build_optimizer
from rnnclf.training.schedule import learning_rate
from rnnclf.training.signals import StopSignal
from rnnclf.training.state import (
    Progress,
    RunFiles,
    enabled_loggers,
    rng_state,
    seed_everything,
    set_rng_state,
)
from rnnclf.training.tensorboard import TensorBoardLog


def fit(config: Config, overwrite: bool = False, resume_dir: Path | None = None,
        log: Any = print, dist: DistContext = SINGLE) -> dict[str, Any]:
    """Train `config`, writing runs/<name>/; returns the summary. Resumes from `resume_dir`.

    Under torchrun, `dist` places this process in the run (rnnclf.training.distributed.session);
    every rank calls fit() and trains its share of the batches, and only rank 0 prints and
    writes files."""
    with contextlib.ExitStack() as claim:  # the run folder's lock, released however fit ends
        trainer = Trainer(config, overwrite, resume_dir, log, dist)
        trainer.setup(claim)
        trainer.train()
        return trainer.finish()


def _quiet(*args: Any, **kwargs: Any) -> None:
    """The log of data-parallel ranks other than 0: only rank 0 prints."""


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class Trainer:
    """One training run: setup(), then train() (the epochs, each closed by _end_epoch), then
    finish(). `fit` runs the three."""

    # Built by setup():
    device: torch.device
    scaler: torch.amp.GradScaler | None  # fp16 loss scaling
    run_dir: Path
    files: RunFiles  # what the run writes (rank 0 only)
    started: float  # perf_counter() when the data started loading
    data: TrainingData
    model: nn.Module  # plain: its state_dict() has no DDP prefix; evaluation uses it
    train_model: nn.Module  # the model wrapped in DDP under torchrun
    optimizer: torch.optim.Optimizer | OptimizerGroup
    total_steps: int  # per rank, over all epochs: the lr schedule's length
    checkpoint_header: dict[str, Any]  # what every checkpoint of the run starts with

    def __init__(self, config: Config, overwrite: bool = False, resume_dir: Path | None = None,
                 log: Any = print, dist: DistContext = SINGLE) -> None:
        self.config, self.overwrite, self.resume_dir, self.dist = (config, overwrite,
                                                                   resume_dir, dist)
        # Under torchrun every rank runs a Trainer; rank 0 alone prints, shows the progress bar
        # and writes the run's files (RunFiles). Beside these lines the rank matters only to the
        # epoch sums a resumed run carries on (_restore).
        self.log = log if dist.is_main else _quiet
        self.show_progress = config.train.progress and dist.is_main
        self.writes_files = dist.is_main
        self.progress = Progress()
        self.stop = StopSignal()
        self.tensorboard: TensorBoardLog | None = None
        self.mlflow: MlflowLog | None = None  # rank 0's MLflow run, ended when fit() ends
        self.stopped_early = False
        self.folder: RunFolder | None = None  # rank 0's claim on the run folder (lock, overwrite)
        # The newest metrics.jsonl line, kept in last.pt so a resume can restore it.
        self.last_record: dict[str, Any] | None = None
        self.best_thresholds: list[float] | None = None  # multi-label: best.pt's thresholds

    # --- setup ---------------------------------------------------------------------------------

    def setup(self, claim: contextlib.ExitStack) -> None:
        """Check, then build the run folder, data, model and optimizer; restore a resumed run.
        Everything that can be refused from the config alone is, before the folder exists."""
        config, dist = self.config, self.dist
        self._check_config()
        if config.train.num_threads > 0:
            torch.set_num_threads(config.train.num_threads)
        self.device = dist.device if dist.enabled else resolve_device(config.train.device)
        # Refuses bf16 on a CPU without native bf16 and fp16 off CUDA: no run folder yet.
        self.scaler = make_grad_scaler(config.train.precision, self.device)
        self.run_dir, self.folder = self._claim_run_folder(claim)
        resume_state = self._load_resume_state()
        self.files = RunFiles(self.run_dir, writes=self.writes_files)
        seed_everything(config.train.seed)
        self.started = time.perf_counter()
        self.data = self._load_data()
        if resume_state is None:  # a resumed run keeps the n-gram table size it saved
            self._fit_ngram_table()
        self.model = self._build_model()
        self.optimizer = build_optimizer(config.optim, self.model)
        if resume_state is not None:
            self._restore(resume_state)
        else:
            self._start_fresh()
        self._log_model()
        self.mlflow = self.files.open_mlflow(config, resume_state is not None, self.log)
        if self.mlflow is not None:  # ends the MLflow run FINISHED, KILLED or FAILED
            claim.enter_context(self.mlflow)
        self.train_model = wrap_model(self.model, dist)  # DDP under torchrun
        # Steps per rank: under DDP each rank runs 1/world_size of the batches, and so does the lr.
        self.total_steps = steps_per_epoch(len(self.data.train), config.train.batch_size,
                                           world_size=dist.world_size) * config.train.epochs
        self.checkpoint_header = {"config": config.to_dict(), "vocab": self.data.vocab.itos,
                                  "label_names": self.data.label_names,
                                  "world_size": dist.world_size}

    def _check_config(self) -> None:
        """Mistakes the config shows on its own."""
        model = self.config.model
        if self.dist.is_main and "mlflow" in enabled_loggers(self.config):
            require_mlflow()  # a missing extra fails before any run folder
        if self.config.data.multi_label:
            check_multilabel_config(self.config.data)
        if model.pretrained_embeddings:  # missing vectors fail before any run folder
            check_spec(model.pretrained_embeddings, model.embedding_dim)
        elif model.pretrained_vocab:
            raise RnnclfError("model.pretrained_vocab adds words of the pretrained vectors, but "
                              "model.pretrained_embeddings is empty; set both, or "
                              "model.pretrained_vocab=0")
        if self.dist.enabled and self.config.optim.skip_nonfinite:
            # A rank that skips its backward pass would leave the others waiting in DDP's
            # all-reduce.
            raise RnnclfError("optim.skip_nonfinite cannot be used with data-parallel training; "
                              "set optim.skip_nonfinite=false or train in one process")

    def _load_resume_state(self) -> dict[str, Any] | None:
        """The last.pt of the run to resume (None for a new run)."""
        if self.resume_dir is None:
            return None
        state = load_checkpoint(self.resume_dir / "last.pt")
        saved_world_size = state.get("world_size", 1)
        if saved_world_size != self.dist.world_size:
            raise RnnclfError(f"{self.resume_dir} was trained in {saved_world_size} process(es), "
                              f"this run has {self.dist.world_size}; resume with the same number "
                              f"(--nproc {saved_world_size}) so its batches and lr schedule "
                              "line up")
        return state

    def _claim_run_folder(self, claim: contextlib.ExitStack) -> tuple[Path, RunFolder | None]:
        """The resumed run's folder, or a new runs/<name>/; rank 0 locks it for the whole run
        (`claim`), and with `overwrite` sets the previous run aside until a new best.pt exists."""
        config, resuming = self.config, self.resume_dir is not None
        if not resuming:
            config.data.dir = str(resolve_data_dir(config.data))  # runs stay valid from any cwd
        run_dir = self.resume_dir if resuming else run_directory(config)
        folder = self.dist.main_only(lambda: claim.enter_context(
            claim_run_folder(run_dir, self.overwrite, resuming=resuming)))
        return run_dir, folder

    def _load_data(self) -> TrainingData:
        config = self.config
        # Under DDP the first process builds the vocabulary and cache; the others then load it.
        data: TrainingData = self.dist.main_first(lambda: prepare_training_data(
            config.data, extra_words=extra_vocabulary(config.model)))
        self.log(f"data: {len(data.train)} train / {len(data.val)} val rows, vocabulary "
                 f"{len(data.vocab)}"
                 + (f", {data.skipped_rows} bad rows skipped" if data.skipped_rows else "")
                 + f" ({time.perf_counter() - self.started:.1f} s)")
        return data

    def _fit_ngram_table(self) -> None:
        """A table no larger than the n-gram positions of the training split."""
        model = self.config.model
        if not model.ngram_order:
            return
        rows = ngram_table_rows(model.ngram_buckets, model.ngram_order, self.data.train.lengths,
                                self.config.data.max_length)
        if rows < model.ngram_buckets:
            self.log(f"n-gram table: {rows:,} rows, not {model.ngram_buckets:,}: the training "
                     f"split holds only {rows:,} n-gram positions (saved as model.ngram_buckets)")
            model.ngram_buckets = rows

    def _build_model(self) -> nn.Module:
        """The model, on the training device."""
        config, dist = self.config, self.dist
        sparse = uses_sparse_embedding(config.optim)
        if sparse and dist.enabled and self.device.type == "cuda":
            # NCCL cannot all-reduce sparse gradients (gloo, on the CPU, can): dense tables there.
            sparse = False
            self.log("data-parallel on CUDA: optim.sparse_embedding is ignored (NCCL needs dense "
                     "gradients); the embedding tables are updated by AdamW")
        backend = select_backend(self.device)
        self.log(f"backend: {describe_backend(backend, self.device)}")
        return build_model(config.model, len(self.data.vocab), len(self.data.label_names),
                           sparse_embedding=sparse, backend=backend).to(self.device)

    def _restore(self, state: dict[str, Any]) -> None:
        """A resumed run's weights, optimizer, loss scaler, progress and RNG states."""
        run_dir, config = self.run_dir, self.config
        if list(state["vocab"]) != self.data.vocab.itos:
            raise RnnclfError(f"the training data changed since {run_dir} started (its vocabulary "
                              f"differs), so it cannot be resumed; restore {config.data.dir}/"
                              f"{config.data.train_file} or start a new run")
        try:
            self.model.load_state_dict(state["model_state"])
            self.optimizer.load_state_dict(state["optimizer_state"])
            self.progress = Progress(**state["progress"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise RnnclfError(f"{run_dir}/last.pt cannot be resumed ({first_line[:160]}); the "
                              "file is damaged or was edited") from None
        if self.scaler is not None and "scaler_state" in state:
            self.scaler.load_state_dict(state["scaler_state"])
        if not self.dist.is_main:  # last.pt holds all ranks' sums; rank 0 alone carries them on
            self.progress.totals = Progress().totals
        set_rng_state(state["rng"])
        self.last_record = state.get("last_epoch_record")
        self.files.reconcile_metrics(self.progress, self.last_record)
        epoch = self.progress.epoch
        if epoch >= config.train.epochs:
            self.log(f"{run_dir} already finished {epoch} epochs; to train longer, resume "
                     f"with train.epochs=N (N > {epoch})")
        else:
            self.log(f"resuming {run_dir} at epoch {epoch + 1}, step {self.progress.global_step}")

    def _start_fresh(self) -> None:
        """A new run: pretrained word vectors (when asked for), then config.yaml."""
        model = self.config.model
        if model.pretrained_embeddings:  # before config.yaml: a bad file leaves no run
            self.progress.pretrained_coverage = load_pretrained(
                self.model.embedding, model.pretrained_embeddings, self.data.vocab)
            self.log(f"pretrained embeddings: {model.pretrained_embeddings} covered "
                     f"{self.progress.pretrained_coverage:.1%} of the vocabulary"
                     f"{' (frozen)' if model.freeze_embeddings else ''}")
        self.files.write_config(self.config)

    def _log_model(self) -> None:
        model, train = self.config.model, self.config.train
        self.log(f"model: {model.cell} x{model.num_layers}"
                 f"{' bidirectional' if model.bidirectional else ''}"
                 f"{f' + n-grams 1..{model.ngram_order}' if model.ngram_order else ''}, "
                 f"{count_parameters(self.model):,} parameters, device {self.device}")
        if self.dist.enabled:
            self.log(f"data-parallel: {self.dist.world_size} processes, batch {train.batch_size} "
                     f"per process ({train.batch_size * self.dist.world_size} per step)")

    # --- the epochs ----------------------------------------------------------------------------

    def train(self) -> None:
        """Epochs until train.epochs, an early stop or a signal (which saves, then raises)."""
        config, progress = self.config, self.progress
        self.tensorboard = self.files.open_tensorboard(config, progress.global_step)
        runner = EpochRunner(self.train_model, self.optimizer, config, self.device, self.scaler,
                             self.dist, self.stop, self.tensorboard, self.show_progress)
        closing = (contextlib.closing(self.tensorboard) if self.tensorboard is not None
                   else contextlib.nullcontext())
        with self.stop.installed(), closing:
            while progress.epoch < config.train.epochs:
                epoch_started = time.perf_counter()
                # Train on this epoch's batches (a resumed run from the step it had reached).
                result = runner.train_one_epoch(self.data.train, progress, self.total_steps)
                # A signal mid-epoch: save last.pt at this step and stop.
                if result.stopped:
                    self._save_and_stop()
                # Validate; record the epoch, keep the best, save; stop early if it says so.
                if self._end_epoch(result, self._validate(), epoch_started):
                    break
                # A signal during validation or saving: the epoch is saved whole; stop.
                if self.stop.agreed(self.dist) and progress.epoch < config.train.epochs:
                    raise self._interrupted()
        self.dist.barrier()  # all ranks leave together, once rank 0 has written its files

    def _validate(self) -> dict[str, Any]:
        """Val loss and accuracy (multi-label: micro-F1 as accuracy, and tuned thresholds);
        under DDP each rank scores a share, all get the whole split's."""
        train, max_length = self.config.train, self.config.data.max_length
        if self.dist.enabled:
            return evaluate_sharded(self.model, self.data.val, train.eval_batch_size, max_length,
                                    self.dist)
        return evaluate(self.model, self.data.val, train.eval_batch_size, max_length,
                        self.device)

    def _save_and_stop(self) -> NoReturn:
        self.files.save_checkpoint("last.pt", self._checkpoint_state(for_resume=True))
        self.dist.barrier()  # last.pt is written before any rank exits (torchrun ends the rest)
        raise self._interrupted()

    def _interrupted(self) -> Interrupted:
        return self.stop.interrupted(self.progress.epoch + 1, self.progress.global_step,
                                     self.run_dir)

    # --- the end of an epoch -------------------------------------------------------------------

    def _end_epoch(self, result: EpochResult, val: dict[str, Any], epoch_started: float
                   ) -> bool:
        """Record the epoch, select the best, save best.pt / last.pt / its metrics line; returns
        True when early stopping ends the run here."""
        record = self._epoch_record(result, val, epoch_started)
        improved = self._select_best(val)
        self.progress.next_epoch()
        self.last_record = record
        if improved:
            # Multi-label: best.pt keeps the thresholds tuned on val for exactly these weights.
            self.best_thresholds = val.get("thresholds")
            self.files.save_checkpoint("best.pt", self._checkpoint_state(for_resume=False))
            if self.folder is not None:  # rank 0: --overwrite's previous run can go now
                self.folder.new_best_written()
        self.files.save_checkpoint("last.pt", self._checkpoint_state(for_resume=True))
        self.files.append_metrics(record)
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(record)
        if self.mlflow is not None:
            self.mlflow.log_epoch(record)
        self.log(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc "
                 f"{record['train_acc']:.4f} | val loss {record['val_loss']:.4f} "
                 f"{'micro-F1' if 'micro_f1' in val else 'acc'} "
                 f"{record['val_acc']:.4f}{' *' if improved else ''} | "
                 f"{record['samples_per_s']:.0f} samples/s, {record['seconds']:.1f} s")
        return self._early_stop()

    def _epoch_record(self, result: EpochResult, val: dict[str, Any], epoch_started: float
                      ) -> dict[str, Any]:
        """The epoch's metrics.jsonl line; the run fails if no step of the epoch was finite."""
        progress, totals = self.progress, result.totals
        record = {
            "epoch": progress.epoch + 1, "step": progress.global_step,
            "train_loss": totals.loss_sum.item() / max(1, totals.seen),
            "train_acc": totals.correct.item() / max(1, totals.seen),
            "val_loss": val["loss"], "val_acc": val["accuracy"],
            "lr": learning_rate(max(0, progress.global_step - 1), self.total_steps,
                                self.config.optim),
            "seconds": time.perf_counter() - epoch_started,
            "samples_per_s": result.samples_per_s,
        }
        # Further val figures (multi-label: micro_f1, macro_f1, subset_accuracy) as val_<name>.
        record.update({f"val_{name}": value for name, value in val.items()
                       if name not in ("loss", "accuracy") and isinstance(value, float)})
        if progress.skipped_steps:
            record["skipped_steps"] = progress.skipped_steps
            self.log(f"epoch {record['epoch']}: skipped {record['skipped_steps']} step(s) with a "
                     "non-finite loss or gradient (optim.skip_nonfinite)")
        if totals.seen == 0:
            raise RunFailed(f"every step of epoch {record['epoch']} had a non-finite loss or "
                            "gradient; lower optim.lr or set optim.grad_clip")
        return record

    def _select_best(self, val: dict[str, Any]) -> bool:
        """Whether this epoch is the best so far (by train.select_by); progress notes it."""
        progress = self.progress
        if self.config.train.select_by == "loss":
            improved = val["loss"] < progress.best_val_loss
        else:
            improved = val["accuracy"] > progress.best_val_acc
        if improved:
            progress.best_val_acc, progress.best_epoch = val["accuracy"], progress.epoch + 1
            progress.best_val_loss = val["loss"]
            progress.epochs_without_improvement = 0
        else:
            progress.epochs_without_improvement += 1
        return improved

    def _early_stop(self) -> bool:
        """True after train.early_stopping_patience epochs without a better val figure."""
        patience, progress = self.config.train.early_stopping_patience, self.progress
        if not patience or progress.epochs_without_improvement < patience:
            return False
        self.stopped_early = progress.epoch < self.config.train.epochs
        if self.stopped_early:
            self.log(f"early stop: no better val {self.config.train.select_by} for {patience} "
                     "epochs")
        return True

    def _checkpoint_state(self, for_resume: bool) -> dict[str, Any]:
        """last.pt (for_resume) also holds the optimizer and loss-scaler state; best.pt, which
        is for eval/predict/export, does not (with Adam that is twice the model's size)."""
        progress = self.progress
        if not _all_finite(self.model):  # e.g. the last step's update overflowed; never save NaN
            # At an epoch's end `epoch` already counts the finished epoch and step_in_epoch is 0.
            epoch = progress.epoch + 1 if progress.step_in_epoch else progress.epoch
            raise RunFailed(f"the model's weights became NaN/inf at epoch {epoch}, step "
                            f"{progress.global_step}; nothing was saved from this state, so "
                            "best.pt/last.pt keep the last good one. Lower optim.lr or set "
                            "optim.grad_clip")
        state = {**self.checkpoint_header, "model_state": self.model.state_dict(),
                 "progress": vars(progress).copy(), "rng": rng_state(),
                 "last_epoch_record": self.last_record}
        if not for_resume and self.best_thresholds is not None:
            state["thresholds"] = self.best_thresholds
        if for_resume:
            state["optimizer_state"] = self.optimizer.state_dict()
            if self.scaler is not None:
                state["scaler_state"] = self.scaler.state_dict()
        return state

    # --- finish --------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """summary.json and the curves plot; the closing line; returns the summary."""
        dump_state_for_tests(self.model, self.dist)  # only when $RNNCLF_DDP_STATE_DUMP is set
        progress, data, config = self.progress, self.data, self.config
        summary = {
            "run_dir": str(self.run_dir), "best_epoch": progress.best_epoch,
            "best_val_acc": progress.best_val_acc, "epochs_run": progress.epoch,
            "stopped_early": self.stopped_early, "global_step": progress.global_step,
            "parameters": count_parameters(self.model), "vocab_size": len(data.vocab),
            "pretrained_coverage": progress.pretrained_coverage,
            "train_rows": len(data.train), "val_rows": len(data.val),
            "skipped_rows": data.skipped_rows, "device": str(self.device),
            "seconds": time.perf_counter() - self.started,
            "epochs": self.files.metrics(),
        }
        self.files.write_summary(summary, self.log)
        if self.mlflow is not None:  # after summary.json and the plots, its artifacts
            self.mlflow.finish()
        chosen_by = (f"best val loss {progress.best_val_loss:.4f} (accuracy "
                     f"{progress.best_val_acc:.4f}, epoch {progress.best_epoch})"
                     if config.train.select_by == "loss" else
                     f"best val {'micro-F1' if config.data.multi_label else 'accuracy'} "
                     f"{progress.best_val_acc:.4f} (epoch {progress.best_epoch})")
        self.log(f"{chosen_by}; checkpoint {self.run_dir / 'best.pt'}")
        return summary

