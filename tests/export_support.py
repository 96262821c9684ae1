"""Helpers for the export tests (tests/inference/test_export.py) and the ensemble export test:
an untrained tiny checkpoint saved the way `rnnclf train` saves one, and the model inputs another
program builds from an export's JSON metadata. Imported by bare name, like kernel_support."""

from __future__ import annotations

from pathlib import Path

import torch

from rnnclf.config import load_config
from rnnclf.data.dataset import encode_texts, text_of
from rnnclf.data.text import Vocab
from rnnclf.models.build import build_model
from rnnclf.runs.checkpoint import save_checkpoint

TEXTS = ["Stocks rally as oil prices fall", "The team won the final",
         "New chip doubles battery life of phones and laptops, the company said on Monday",
         "rain", "Talks stall over border, ministers say"]
LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def make_checkpoint(folder: Path, cell: str, bidirectional: bool, pooling: str,
                    num_layers: int = 1, overrides: tuple[str, ...] = ()) -> Path:
    """An untrained tiny model saved the way `rnnclf train` saves one."""
    torch.manual_seed(0)
    config = load_config(None, [f"model.cell={cell}", f"model.bidirectional={bidirectional}",
                                f"model.pooling={pooling}", f"model.num_layers={num_layers}",
                                "model.embedding_dim=8", "model.pretrained_embeddings=",
                                "model.hidden_size=8",
                                "data.max_length=12", *overrides])
    tokens = [token for text in TEXTS for token in text_of(text, True)]
    vocab = Vocab.build([tokens[::2]])  # some words stay unknown
    model = build_model(config.model, len(vocab), len(LABELS))
    with torch.no_grad():  # large weights make the probabilities far from uniform
        for parameter in model.parameters():
            parameter.mul_(3)
    path = folder / "best.pt"
    save_checkpoint(path, {"config": config.to_dict(), "vocab": vocab.itos,
                           "label_names": LABELS, "model_state": model.state_dict()})
    return path


def inputs_from_metadata(info: dict, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What another program does with the JSON: tokenize, look up ids, pad (unequal lengths)."""
    vocab = Vocab(info["vocab"])
    split = encode_texts([text_of(text, info["text"]["clean"]) for text in texts],
                         [0] * len(texts), vocab)
    lengths = split.lengths  # texts longer than max_length: the exported model truncates
    tokens = torch.full((len(texts), int(lengths.max())), info["pad_index"], dtype=torch.int64)
    for row, (offset, length) in enumerate(zip(split.offsets, lengths)):
        tokens[row, :length] = split.tokens[offset:offset + length].long()
    return tokens, lengths
