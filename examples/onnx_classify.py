"""Classify texts with an exported ONNX model and its JSON, without rnnclf (numpy + onnxruntime).

    python examples/onnx_classify.py runs/NAME/best.onnx "some text" "another text"

The tokenizer below is torchtext's basic_english, as the JSON's "text" section describes. Models
trained with data.clean=true also expect rnnclf's AG News clean-up first (see clean_note there).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime

RULES = str.maketrans({"'": " '  ", ".": " . ", ",": " , ", "(": " ( ", ")": " ) ", "!": " ! ",
                       "?": " ? ", ";": " ", ":": " "})


def basic_english(text: str) -> list[str]:
    text = text.lower().replace('"', "").replace("<br />", " ")
    return text.translate(RULES).split()


def main(model_path: str, texts: list[str]) -> None:
    with open(model_path + ".json", encoding="utf-8") as handle:
        info = json.load(handle)
    index = {token: i for i, token in enumerate(info["vocab"])}
    max_length = info["text"]["max_length"]
    ids = [[index.get(token, info["unk_index"]) for token in basic_english(text)][:max_length]
           or [info["unk_index"]] for text in texts]
    lengths = np.array([len(row) for row in ids], dtype=np.int64)
    tokens = np.full((len(ids), lengths.max()), info["pad_index"], dtype=np.int64)
    for row, row_ids in enumerate(ids):
        tokens[row, :len(row_ids)] = row_ids
    session = onnxruntime.InferenceSession(model_path)
    (probabilities,) = session.run(["probabilities"], {"tokens": tokens, "lengths": lengths})
    for text, row in zip(texts, probabilities):
        best = int(row.argmax())
        print(f"{info['label_names'][best]}\t{row[best]:.4f}\t{text}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
