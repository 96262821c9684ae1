"""`rnnclf pretrain`: the classifier's embedding and recurrent encoder trained as a language model.

The run is a Trainer (setup, resume, run folder and lock, checkpoints, signals, DDP) whose data,
model, epoch steps, validation and records are the language model's:
- texts: the training split's own (after the validation carve-out: never a validation or test
  text), less a held-out slice (pretrain.val_fraction) that measures perplexity, plus
  pretrain.unlabeled_files; numericalized with the classifier's vocabulary, so `model.init_from`
  finds the same vocabulary;
- model: rnnclf.models.language_model.LanguageModel over an RNNClassifier's encoder;
- loss: mean negative log-likelihood per predicted token; perplexity = exp(loss).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf.config import Config
from rnnclf.data.batches import Batch, eval_batches
from rnnclf.data.dataset import (
    EncodedSplit,
    TrainingData,
    encode_texts,
    prepare_training_data,
    split_indices,
    text_of,
)
from rnnclf.data.unlabeled import read_unlabeled_texts, unlabeled_paths
from rnnclf.data.word_vectors import extra_vocabulary
from rnnclf.models.build import build_model
from rnnclf.models.classifier import count_parameters
from rnnclf.models.language_model import LanguageModel
from rnnclf.runs.atomic import write_json
from rnnclf.training.distributed import SINGLE, DistContext, dump_state_for_tests
from rnnclf.training.epoch import EpochResult, EpochRunner, EpochTotals
from rnnclf.training.trainer import Trainer


def pretrain_config(config: Config) -> Config:
    """The language model run's config: `config` with its pretrain section in train/optim."""
    lm = copy.deepcopy(config)
    lm.train.name = lm.pretrain.name = config.pretrain.name or f"{config.train.name}_lm"
    lm.train.epochs, lm.train.batch_size = config.pretrain.epochs, config.pretrain.batch_size
    lm.train.select_by, lm.train.ensemble = "loss", 1
    lm.optim.lr, lm.optim.label_smoothing = config.pretrain.lr, 0.0
    lm.optim.sparse_embedding = False  # the tied output layer reads the whole table
    lm.optim.discriminative_lr, lm.optim.gradual_unfreeze = 1.0, False
    lm.model.ngram_order, lm.model.init_from = 0, ""  # the n-gram bag is the classifier's only
    return lm


def compact(split: EncodedSplit) -> EncodedSplit:
    """The rows of `split` in a flat token tensor of their own (a subset shares the whole file's:
    the language model's must hold nothing but its own texts)."""
    starts = torch.repeat_interleave(split.offsets, split.lengths)
    within = torch.arange(len(starts)) - torch.repeat_interleave(
        torch.cumsum(split.lengths, 0) - split.lengths, split.lengths)
    offsets = torch.cumsum(split.lengths, 0) - split.lengths
    return EncodedSplit(split.tokens[starts + within].clone(), offsets, split.lengths.clone(),
                        torch.zeros_like(split.lengths))


def concatenate(first: EncodedSplit, second: EncodedSplit) -> EncodedSplit:
    """`second`'s texts after `first`'s (both compact)."""
    return EncodedSplit(torch.cat([first.tokens, second.tokens]),
                        torch.cat([first.offsets, second.offsets + len(first.tokens)]),
                        torch.cat([first.lengths, second.lengths]),
                        torch.cat([first.labels, second.labels]))


def language_model_texts(config: Config) -> tuple[TrainingData, int]:
    """The language model's train and held-out texts, and how many came from unlabeled files.
    Texts of one token predict nothing and are left out."""
    data = prepare_training_data(config.data, extra_words=extra_vocabulary(config.model))
    train_rows, held_out_rows = split_indices(len(data.train), config.pretrain.val_fraction,
                                              config.data.split_seed + 1)
    train = compact(data.train.subset(train_rows))
    unlabeled = [text_of(text, config.data.clean)
                 for path in unlabeled_paths(config.pretrain.unlabeled_files)
                 for text in read_unlabeled_texts(path, config.data)]
    if unlabeled:
        extra = encode_texts(unlabeled, [0] * len(unlabeled), data.vocab)
        train = concatenate(train, compact(extra))
    train, held_out = (_predicting(split) for split in (train, data.train.subset(held_out_rows)))
    return TrainingData(data.vocab, [], train, compact(held_out), data.skipped_rows), len(
        unlabeled)


def _predicting(split: EncodedSplit) -> EncodedSplit:
    return split.subset(torch.nonzero(split.lengths >= 2).flatten())


class LanguageModelRunner(EpochRunner):
    """EpochRunner's loop with the language model's loss; its sums count predicted tokens."""

    def forward_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        nll_sum = self.model(batch.tokens, batch.lengths)  # 0-d, summed over predicted tokens
        if self.dist.enabled:
            nll_sum = nll_sum + self._zero_from_every_output_weight()
        return nll_sum / max(1, self._predicted(batch)), nll_sum

    def _zero_from_every_output_weight(self) -> torch.Tensor:
        """0, with a gradient path to each output-layer parameter. DDP stops the run when a
        step leaves a parameter without a gradient, and a batch whose targets miss an adaptive-
        softmax tail cluster gives that cluster none."""
        heads = self.model.module.heads  # self.model is DDP-wrapped here
        return sum(parameter.sum() for parameter in heads.parameters()) * 0.0

    def count(self, totals: EpochTotals, loss: torch.Tensor, nll_sum: torch.Tensor,
              batch: Batch) -> None:
        totals.loss_sum += nll_sum.detach().double()
        totals.seen += self._predicted(batch)

    def _predicted(self, batch: Batch) -> int:
        """Tokens predicted in `batch`: from the lengths on the host, so no device sync."""
        directions = 2 if self.config.model.bidirectional else 1
        return int((batch.lengths - 1).clamp(min=0).sum()) * directions


@torch.inference_mode()
def evaluate_language_model(model: LanguageModel, split: EncodedSplit, batch_size: int,
                            max_length: int, device: torch.device) -> dict[str, float]:
    """Mean negative log-likelihood per predicted token over `split`, and its perplexity."""
    model.eval()
    total, predicted = 0.0, 0
    for batch in eval_batches(split, batch_size, max_length):
        total += float(model(batch.tokens.to(device), batch.lengths))
        predicted += model.predicted_tokens(batch.lengths)
    loss = total / max(1, predicted)
    return {"loss": loss, "accuracy": 0.0, "perplexity": _perplexity(loss)}


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # capped: an untrained model's exp() must stay printable


class PretrainTrainer(Trainer):
    """A Trainer whose data, model, steps and records are the language model's."""

    runner_class = LanguageModelRunner
    unlabeled_texts = 0

    def setup(self, claim: contextlib.ExitStack) -> None:
        super().setup(claim)
        self.checkpoint_header["language_model"] = True  # model.init_from says what it loaded

    def _load_data(self) -> TrainingData:
        data, self.unlabeled_texts = self.dist.main_first(lambda: language_model_texts(
            self.config))
        self.log(f"language model texts: {len(data.train):,} ({self.unlabeled_texts:,} "
                 f"unlabeled), {int(data.train.lengths.sum()):,} tokens; {len(data.val):,} "
                 f"held out for perplexity; vocabulary {len(data.vocab):,} "
                 f"({time.perf_counter() - self.started:.1f} s)")
        return data

    def _build_model(self) -> nn.Module:
        """The reference path: the speed backend pools, the language model needs every state."""
        config = self.config
        encoder = build_model(config.model, len(self.data.vocab), 1)
        return LanguageModel(encoder, config.pretrain.output,
                             config.pretrain.output_vocab).to(self.device)

    def _validate(self) -> dict[str, float]:
        """Every rank scores the whole held-out slice (it is small)."""
        return evaluate_language_model(self.model, self.data.val, self.config.train.batch_size,
                                       self.config.data.max_length, self.device)

    def _epoch_record(self, result: EpochResult, val: dict[str, float], epoch_started: float
                      ) -> dict[str, Any]:
        record = super()._epoch_record(result, val, epoch_started)
        del record["train_acc"], record["val_acc"]
        record["train_ppl"] = _perplexity(record["train_loss"])
        record["val_ppl"] = _perplexity(record["val_loss"])
        del record["val_perplexity"]  # the generic val_<name> copy of val_ppl
        record["tokens_per_s"] = record.pop("samples_per_s")
        return record

    def _log_epoch(self, record: dict[str, Any], improved: bool) -> None:
        self.log(f"epoch {record['epoch']}: train perplexity {record['train_ppl']:.1f} | val "
                 f"perplexity {record['val_ppl']:.1f}{' *' if improved else ''} | "
                 f"{record['tokens_per_s']:.0f} tokens/s, {record['seconds']:.1f} s")

    def finish(self) -> dict[str, Any]:
        dump_state_for_tests(self.model, self.dist)  # only when $RNNCLF_DDP_STATE_DUMP is set
        progress = self.progress
        summary = {
            "run_dir": str(self.run_dir), "best_epoch": progress.best_epoch,
            "best_val_loss": progress.best_val_loss,
            "best_val_perplexity": _perplexity(progress.best_val_loss),
            "epochs_run": progress.epoch, "stopped_early": self.stopped_early,
            "global_step": progress.global_step, "parameters": count_parameters(self.model),
            "vocab_size": len(self.data.vocab), "train_texts": len(self.data.train),
            "unlabeled_texts": self.unlabeled_texts, "val_texts": len(self.data.val),
            "device": str(self.device), "seconds": time.perf_counter() - self.started,
            "epochs": self.files.metrics(),
        }
        if self.files.writes:
            write_json(self.run_dir / "summary.json", summary)
        self.log(f"best val perplexity {summary['best_val_perplexity']:.1f} (epoch "
                 f"{progress.best_epoch}); encoder checkpoint {self.run_dir / 'best.pt'} "
                 "(use it with model.init_from)")
        return summary


def fit_language_model(config: Config, overwrite: bool = False, resume_dir: Path | None = None,
                       log: Any = print, dist: DistContext = SINGLE) -> dict[str, Any]:
    """Pretrain `config` (a language model run's config: `pretrain_config`), writing
    runs/<name>/; returns the summary. Resumes from `resume_dir`."""
    with contextlib.ExitStack() as claim:
        trainer = PretrainTrainer(config, overwrite, resume_dir, log, dist)
        trainer.setup(claim)
        trainer.train()
        return trainer.finish()
