"""int8 against fp32 on a test split: accuracy, speed and file size (docs/benchmarks.md).

    python scripts/quantize_bench.py runs/default/best.pt --threads 1
    python scripts/quantize_bench.py RUN/best.pt --data-dir ../shared/data/ag_news --onnx

In one process, on the checkpoint's test file (or --data-dir/--test-file): the fp32 model, the
int8 model quantized on load (`--quantize int8`) and the int8 checkpoint that `rnnclf export
--format checkpoint --quantize int8` writes (written to a temporary folder). Speed is
`predict_split` over the whole split (what `rnnclf eval` times), the two models interleaved
--repeats times after a warm-up, median texts/s. With --onnx, also the fp32 and int8 ONNX
exports in onnxruntime (needs rnnclf[export]).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from rnnclf.data.batches import eval_batches, eval_order
from rnnclf.data.dataset import EncodedSplit, locate_file, prepare_eval_split
from rnnclf.inference.export import export_checkpoint
from rnnclf.inference.quantize import load_for_inference
from rnnclf.inference.scoring import predict_split
from rnnclf.runs.checkpoint import LoadedModel

CPU = torch.device("cpu")


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers in memory."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def timed_rates(models: dict[str, torch.nn.Module], split: EncodedSplit, loaded: LoadedModel,
                repeats: int) -> dict[str, tuple[float, float]]:
    """Per model, median texts per wall second and per CPU second (this process's; steadier
    on a shared machine) of predict_split, interleaved, after one warm-up each."""
    batch_size, max_length = loaded.config.train.eval_batch_size, loaded.config.data.max_length
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for round_ in range(repeats + 1):
        for name, model in models.items():
            wall, cpu = time.perf_counter(), time.process_time()
            predict_split(model, split, batch_size, max_length, CPU)
            if round_ > 0:
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    rows = len(split.labels)
    return {name: (rows / statistics.median(w for w, _ in values),
                   rows / statistics.median(c for _, c in values))
            for name, values in times.items()}


def torch_ao_model(checkpoint: Path) -> torch.nn.Module:
    """The route not taken, for its speed: torch.ao dynamic int8 (deprecated in torch 2.13) on
    the model's reference path: each GRU/LSTM direction and the output layer dynamic int8,
    the tables left fp32 (NgramBag reads its table's weight directly). GRU/LSTM only: torch.ao
    has no dynamic nn.RNN."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    from rnnclf.runs.checkpoint import load_model

    model = load_model(checkpoint, CPU, reference_path=True).model
    directions = [(layer, reverse) for layer in range(model.rnn.num_layers)
                  for reverse in ((False, True) if model.bidirectional else (False,))]
    kinds = {torch.nn.GRU, torch.nn.LSTM, torch.nn.Linear}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notices
        quantized = {key: quantize_dynamic(torch.nn.Sequential(model._direction(*key)), kinds,
                                           dtype=torch.qint8)[0] for key in directions}
        model.classifier = quantize_dynamic(torch.nn.Sequential(model.classifier), kinds,
                                            dtype=torch.qint8)[0]
    model._direction = lambda layer, reverse: quantized[(layer, reverse)]
    return model.eval()


def onnx_predictions(path: Path, split: EncodedSplit, loaded: LoadedModel) -> torch.Tensor:
    """Predicted class per row (row order) from an ONNX file in onnxruntime."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    max_length = loaded.config.data.max_length
    chunks = [torch.from_numpy(session.run(["logits"], {
        "tokens": batch.tokens.numpy(), "lengths": batch.lengths.numpy()})[0]).argmax(1)
        for batch in eval_batches(split, loaded.config.train.eval_batch_size, max_length)]
    ordered = torch.empty(len(split.labels), dtype=torch.int64)
    ordered[eval_order(split, max_length)] = torch.cat(chunks)
    return ordered


def onnx_rows(checkpoint: Path, folder: Path, split: EncodedSplit, loaded: LoadedModel
              ) -> list[dict[str, Any]]:
    rows = []
    for quantize in (None, "int8"):
        path, _ = export_checkpoint(checkpoint, "onnx", folder / f"model.{quantize}.onnx",
                                    quantize=quantize)
        predicted = onnx_predictions(path, split, loaded)  # a warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        predicted = onnx_predictions(path, split, loaded)
        rate = (len(split.labels) / (time.perf_counter() - wall),
                len(split.labels) / (time.process_time() - cpu))
        rows.append({"model": f"ONNX {quantize or 'fp32'} (onnxruntime)",
                     "accuracy": (predicted == split.labels).double().mean().item(),
                     "texts_per_s": rate, "file_bytes": path.stat().st_size,
                     "predicted": predicted})
    return rows


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    checkpoint = Path(args.checkpoint)
    fp32 = load_for_inference(checkpoint, CPU)
    data_config = fp32.config.data
    if args.data_dir:
        data_config = replace(data_config, dir=args.data_dir)
    test_path = locate_file(data_config, args.test_file or data_config.test_file)
    split, _ = prepare_eval_split(data_config, fp32.vocab, test_path,
                                  label_names=fp32.label_names)
    on_load = load_for_inference(checkpoint, CPU, quantize="int8")
    with tempfile.TemporaryDirectory(prefix="rnnclf-int8-bench-") as name:
        folder = Path(name)
        int8_path, _ = export_checkpoint(checkpoint, "checkpoint", folder / "best.int8.pt",
                                         quantize="int8")
        int8_size = int8_path.stat().st_size
        from_file = load_for_inference(int8_path, CPU)
        extra = onnx_rows(checkpoint, folder, split, fp32) if args.onnx else []
    models = {"fp32": fp32.model, "int8": on_load.model}
    if args.torch_ao:
        models["torch.ao"] = torch_ao_model(checkpoint)
    rates = timed_rates(models, split, fp32, args.repeats)
    rows = []
    for label, loaded, size in (("fp32 (best.pt)", fp32, checkpoint.stat().st_size),
                                ("int8 (quantized on load)", on_load, None),
                                ("int8 (best.int8.pt)", from_file, int8_size)):
        logits, labels = predict_split(loaded.model, split, 1024, data_config.max_length, CPU)
        rows.append({"model": label, "accuracy": (logits.argmax(1) == labels).double()
                     .mean().item(), "predicted": logits.argmax(1), "file_bytes": size,
                     "texts_per_s": rates["int8" if loaded.quantization else "fp32"]
                     if loaded is not from_file else None,
                     "model_bytes": model_bytes(loaded.model)})
    if args.torch_ao:
        logits, labels = predict_split(models["torch.ao"], split, 1024,
                                       data_config.max_length, CPU)
        rows.append({"model": "torch.ao dynamic int8 (GRU/LSTM + Linear; not used)",
                     "accuracy": (logits.argmax(1) == labels).double().mean().item(),
                     "predicted": logits.argmax(1), "texts_per_s": rates["torch.ao"]})
    return rows + extra


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    reference = rows[0]
    print(f"| model | test acc | change | same label as fp32 | texts/s ({args.threads} "
          "thread(s)): wall / CPU time | file | weights in memory |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        change = 100 * (row["accuracy"] - reference["accuracy"])
        same = (row["predicted"] == reference["predicted"]).double().mean().item()
        rate = row.get("texts_per_s")
        rate = ("(as above)" if rate is None else f"{rate:,.0f}" if isinstance(rate, float)
                else f"{rate[0]:,.0f} / {rate[1]:,.0f}")
        size = f"{row['file_bytes'] / 2**20:.1f} MiB" if row.get("file_bytes") else "(none)"
        memory = f"{row['model_bytes'] / 2**20:.1f} MiB" if row.get("model_bytes") else ""
        print(f"| {row['model']} | {100 * row['accuracy']:.2f}% | {change:+.2f} | "
              f"{100 * same:.2f}% | {rate} | {size} | {memory} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="an fp32 best.pt")
    parser.add_argument("--data-dir", default="", help="folder of the test file (default: the "
                        "checkpoint's data.dir)")
    parser.add_argument("--test-file", default="", help="default: the checkpoint's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--onnx", action="store_true", help="also the ONNX exports (one timed "
                        "pass each, after a warm-up)")
    parser.add_argument("--torch-ao", action="store_true", help="also torch.ao's dynamic int8 "
                        "(the route not taken), timed with the others")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args)
    if args.json:
        print(json.dumps([{key: value for key, value in row.items() if key != "predicted"}
                          for row in rows]))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
