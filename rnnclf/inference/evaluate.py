"""`rnnclf eval`: a checkpoint on the test split (or val, or another file) -> metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rnnclf.data.dataset import (
    EncodedSplit,
    locate_split,
    prepare_eval_split,
    prepare_training_data,
)
from rnnclf.data.word_vectors import extra_vocabulary
from rnnclf.device import inference_autocast, resolve_device
from rnnclf.inference.metrics import classification_report
from rnnclf.inference.multilabel_metrics import checkpoint_thresholds, multilabel_report
from rnnclf.inference.scoring import predict_split
from rnnclf.runs.atomic import write_json
from rnnclf.runs.checkpoint import LoadedModel, load_model
from rnnclf.training import plots


def evaluate_checkpoint(checkpoint: Path, split: str = "test", data_file: Path | None = None,
                        device_name: str = "auto", batch_size: int | None = None,
                        write: bool = True, log: Callable[[str], None] | None = None,
                        precision: str = "fp32") -> dict[str, Any]:
    """Metrics of `checkpoint` on `split` ("test" or "val") or on `data_file`; writes eval.json
    and, with matplotlib installed, the confusion matrix as confusion.png beside it."""
    device = resolve_device(device_name)
    autocast = inference_autocast(precision, device)  # a wrong --precision fails first
    loaded = load_model(checkpoint, device)
    data_config = loaded.config.data
    skipped = 0
    if data_file is not None:
        source = str(data_file)
        # hf also evaluates on a save_to_disk folder
        if not (data_file.is_file() or (data_config.dataset == "hf" and data_file.is_dir())):
            from rnnclf.errors import RnnclfError

            raise RnnclfError(f"data file {data_file} does not exist; give a file in the format "
                              "the model was trained on")
        encoded, skipped = prepare_eval_split(data_config, loaded.vocab, data_file,
                                              label_names=loaded.label_names)
    elif split == "val":
        data = prepare_training_data(data_config,
                                     extra_words=extra_vocabulary(loaded.config.model))
        if data.vocab.itos != loaded.vocab.itos:
            from rnnclf.errors import RnnclfError

            raise RnnclfError("the training file changed since this model was trained, so its "
                              "validation split cannot be rebuilt; evaluate on a file instead")
        encoded, source = data.val, f"{data_config.train_file} (validation split)"
    else:
        test_source = locate_split(data_config, "test")
        source = test_source.where
        encoded, skipped = prepare_eval_split(data_config, loaded.vocab, test_source,
                                              label_names=loaded.label_names)
    with autocast:
        report = _report(loaded, encoded, batch_size or loaded.config.train.eval_batch_size,
                         device)
    report.update({"checkpoint": str(checkpoint), "split": "file" if data_file else split,
                   "data": source, "skipped_rows": skipped, "precision": precision})
    if write:
        name = "eval.json" if split == "test" and data_file is None else f"eval_{split}.json"
        if data_file is not None:
            name = f"eval_{data_file.stem}.json"
        write_json(checkpoint.parent / name, report)
        if not report.get("multi_label"):  # multi-label has no confusion matrix
            image = plots.confusion_path(checkpoint.parent / name)
            plots.try_plot(lambda: plots.plot_confusion(report, image), log)
    return report


def _report(loaded: LoadedModel, split: EncodedSplit, batch_size: int, device: torch.device
            ) -> dict[str, Any]:
    logits, labels = predict_split(loaded.model, split, batch_size,
                                   loaded.config.data.max_length, device)
    label_names = loaded.label_names
    if loaded.config.data.multi_label:  # decisions at the model's per-label thresholds
        thresholds = checkpoint_thresholds(loaded.payload, len(label_names))
        report = multilabel_report(logits, labels, label_names, thresholds)
        # False: best.pt stores none (e.g. a run stopped early), so 0.5 each was used.
        report["thresholds_tuned"] = "thresholds" in loaded.payload
        return report
    return classification_report(labels, logits.argmax(1), label_names)
