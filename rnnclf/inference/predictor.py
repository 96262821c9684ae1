"""Predictor: a checkpoint and raw texts -> class probabilities."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnclf.data.batches import collate
from rnnclf.data.dataset import encode_texts, text_of
from rnnclf.device import inference_autocast, resolve_device
from rnnclf.errors import RnnclfError
from rnnclf.inference.multilabel_metrics import checkpoint_thresholds, decisions
from rnnclf.runs.checkpoint import load_model

# Texts beyond this many characters are cut before tokenizing: max_length tokens never need
# more, and it keeps memory bounded for a 1 MB line.
CHARS_PER_TOKEN_BOUND = 64


@dataclass
class Prediction:
    text: str
    labels: list[str]  # top-k, most probable first
    probabilities: list[float]
    truncated: bool  # the text was longer than the model's max_length tokens
    # Multi-label models: every label whose probability reaches its threshold, most probable
    # first, and those probabilities (None for single-label models).
    chosen: list[str] | None = None
    chosen_probabilities: list[float] | None = None


class Predictor:
    def __init__(self, checkpoint: Path, device_name: str = "auto",
                 precision: str = "fp32") -> None:
        self.device = resolve_device(device_name)
        inference_autocast(precision, self.device)  # a wrong --precision fails before loading
        self.precision = precision
        loaded = load_model(checkpoint, self.device)
        self.model = loaded.model
        self.vocab = loaded.vocab
        self.label_names = loaded.label_names
        self.data_config = loaded.config.data
        self.clean = loaded.config.data.clean
        self.max_length = loaded.config.data.max_length
        self.batch_size = loaded.config.train.eval_batch_size
        self.multi_label = loaded.config.data.multi_label
        self.thresholds = checkpoint_thresholds(loaded.payload, len(self.label_names)) \
            if self.multi_label else None

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) -> probabilities: softmax over classes, or sigmoid per label."""
        return logits.float().sigmoid() if self.multi_label else logits.float().softmax(dim=1)

    def chosen_labels(self, probabilities: torch.Tensor) -> list[list[int]]:
        """Multi-label: per row, the labels at or above their threshold, most probable first."""
        assert self.thresholds is not None
        above = decisions(probabilities, self.thresholds)
        order = probabilities.argsort(dim=1, descending=True, stable=True)
        return [[index for index in row_order if row_above[index]]
                for row_order, row_above in zip(order.tolist(), above.tolist())]

    def predict(self, texts: list[str], top_k: int = 1) -> list[Prediction]:
        for number, text in enumerate(texts, 1):
            if not text or text.isspace():  # no .strip(): it would copy a huge text
                raise RnnclfError(f"text {number} is empty; give some words to classify")
        top_k = max(1, min(top_k, len(self.label_names)))
        results: list[Prediction] = []
        for start in range(0, len(texts), self.batch_size):
            results.extend(self._predict_batch(texts[start:start + self.batch_size], top_k))
        return results

    def autocast(self) -> AbstractContextManager:
        """The arithmetic asked for (`--precision`), around each model call."""
        return inference_autocast(self.precision, self.device)

    @torch.inference_mode()
    def _predict_batch(self, texts: list[str], top_k: int) -> list[Prediction]:
        char_limit = self.max_length * CHARS_PER_TOKEN_BOUND
        token_lists = [text_of(text[:char_limit], self.clean) for text in texts]
        truncated = [len(text) > char_limit or len(tokens) > self.max_length
                     for text, tokens in zip(texts, token_lists)]
        split = encode_texts(token_lists, [0] * len(texts), self.vocab)
        batch = collate(split, torch.arange(len(texts)), self.max_length)
        with self.autocast():
            logits = self.model(batch.tokens.to(self.device), batch.lengths)
        probabilities = self.probabilities(logits).cpu()
        values, indices = probabilities.topk(top_k, dim=1)
        results = [Prediction(text, [self.label_names[i] for i in row_indices.tolist()],
                              row_values.tolist(), was_truncated)
                   for text, row_values, row_indices, was_truncated
                   in zip(texts, values, indices, truncated)]
        if self.multi_label:
            for result, row, chosen in zip(results, probabilities.tolist(),
                                           self.chosen_labels(probabilities)):
                result.chosen = [self.label_names[index] for index in chosen]
                result.chosen_probabilities = [row[index] for index in chosen]
        return results
