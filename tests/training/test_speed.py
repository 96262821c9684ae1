"""Speed work: sparse embedding + SparseAdam, clipping, prefetch, presorted packing, precision,
faster preprocessing (same results), and the benchmark script's smoke mode."""

from __future__ import annotations

import csv
import html
import json
import os
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnclf.device
from rnnclf.accel.backend import CpuBackend, padded_segments
from rnnclf.config.resume import load_resume_config
from rnnclf.config.schema import Config, OptimConfig
from rnnclf.data import text as text_module
from rnnclf.data.batches import bucketed_batches, epoch_batches
from rnnclf.data.dataset import encode_texts
from rnnclf.data.prefetch import prefetch
from rnnclf.data.text import _BASIC_ENGLISH_TABLE, Vocab, clean_ag_news, tokenize
from rnnclf.device import cpu_has_native_bf16, make_grad_scaler
from rnnclf.errors import RnnclfError
from rnnclf.models.build import build_model, uses_sparse_embedding
from rnnclf.models.classifier import RNNClassifier
from rnnclf.models.pooling import pool_states
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.training.optimizers import OptimizerGroup, build_optimizer, clip_grad_norm
from rnnclf.training.trainer import fit

REPO = Path(__file__).resolve().parents[2]
WORDS = {1: "president election troops summit treaty", 2: "football coach goal league medal",
         3: "shares profit bank markets oil", 4: "software internet chip google nasa"}


def write_tiny_agnews(folder: Path, rows: int = 240) -> Path:
    rng = random.Random(3)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.csv", rows), ("test.csv", 40)):
        lines = []
        for index in range(count):
            label = index % 4 + 1
            pool = WORDS[label].split() + ["the", "a", "of", "said"]
            lines.append((str(label), " ".join(rng.choices(pool, k=3)),
                          " ".join(rng.choices(pool, k=rng.randint(2, 25)))))
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(lines)
    return folder


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RNNCLF_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_config(data_dir: Path, runs_dir: Path, **optim: object) -> Config:
    config = Config()
    config.data.dir = str(data_dir)
    config.data.download = False
    config.model.embedding_dim = config.model.hidden_size = 8
    config.model.pretrained_embeddings = ""
    config.train.batch_size = 16
    config.train.epochs = 2
    config.train.progress = False
    config.train.num_threads = 1
    config.train.runs_dir = str(runs_dir)
    config.train.name = "tiny"
    for key, value in optim.items():
        setattr(config.optim, key, value)
    return config


def batch_of(vocab_size: int = 30) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([9, 7, 7, 4, 2, 1])
    tokens = torch.randint(2, vocab_size, (6, 9), generator=generator)
    tokens[torch.arange(9).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return tokens, lengths, torch.tensor([0, 1, 2, 3, 0, 1])


# --- sparse embedding and its optimizer ------------------------------------------------------


def test_dense_adamw_is_fused_when_torch_has_the_kernel() -> None:
    optimizer = build_optimizer(OptimConfig(), build_model(Config().model, 50, 4))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults.get("fused") in (True, None, False)  # falls back on old torch
    if tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 4):
        assert optimizer.defaults["fused"] is True


def test_sparse_embedding_optimizer_covers_every_parameter_once() -> None:
    model = build_model(Config().model, 50, 4, sparse_embedding=True)
    optimizer = build_optimizer(OptimConfig(sparse_embedding=True), model)
    assert isinstance(optimizer, OptimizerGroup)
    dense, sparse = optimizer.optimizers
    assert isinstance(dense, torch.optim.AdamW) and isinstance(sparse, torch.optim.SparseAdam)
    assert ([p for g in sparse.param_groups for p in g["params"]]
            == [model.embedding.weight, model.ngram_bag.table.weight])  # the word and n-gram tables
    owned = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(owned) == sorted(id(p) for p in model.parameters())


def test_sparse_embedding_only_with_adamw() -> None:
    assert uses_sparse_embedding(OptimConfig(sparse_embedding=True))
    assert uses_sparse_embedding(OptimConfig())  # on by default: see docs/accuracy.md
    assert not uses_sparse_embedding(OptimConfig(name="sgd", sparse_embedding=True))
    assert not uses_sparse_embedding(OptimConfig(sparse_embedding=False))
    dense = build_model(Config().model, 50, 4)
    assert isinstance(build_optimizer(OptimConfig(name="sgd"), dense), torch.optim.SGD)
    sparse = build_model(Config().model, 50, 4, sparse_embedding=True)
    with pytest.raises(ValueError):
        build_optimizer(OptimConfig(name="sgd"), sparse)


def test_sparse_step_moves_only_the_rows_the_batch_used() -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, "gru", 8, sparse_embedding=True)
    optimizer = build_optimizer(OptimConfig(), model)
    tokens, lengths, labels = batch_of()
    before = model.embedding.weight.detach().clone()
    F.cross_entropy(model(tokens, lengths), labels).backward()
    assert model.embedding.weight.grad.is_sparse
    clip_grad_norm(model.parameters(), 1.0)
    optimizer.step()
    changed = (model.embedding.weight.detach() != before).any(dim=1)
    used = torch.zeros(30, dtype=torch.bool)
    used[tokens[tokens != 0]] = True
    assert torch.equal(changed, used)


def test_sparse_gradient_and_clipping_match_the_dense_model() -> None:
    torch.manual_seed(0)
    dense = RNNClassifier(30, 4, 8, "lstm", 8)
    sparse = RNNClassifier(30, 4, 8, "lstm", 8, sparse_embedding=True)
    sparse.load_state_dict(dense.state_dict())
    tokens, lengths, labels = batch_of()
    for model in (dense, sparse):
        model.eval()  # no dropout: both see the same function
        F.cross_entropy(model(tokens, lengths), labels).backward()
    dense_norm = nn.utils.clip_grad_norm_(dense.parameters(), 0.01)
    sparse_norm = clip_grad_norm(sparse.parameters(), 0.01)
    assert torch.allclose(dense_norm, sparse_norm, rtol=1e-5)
    for (name, a), b in zip(dense.named_parameters(), sparse.parameters()):
        grad = b.grad.to_dense() if b.grad.is_sparse else b.grad
        assert torch.allclose(a.grad, grad, atol=1e-7), name


def test_optimizer_group_state_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    def trained(steps: int) -> tuple[RNNClassifier, OptimizerGroup]:
        torch.manual_seed(0)
        model = RNNClassifier(30, 4, 8, "gru", 8, dropout=0.0, sparse_embedding=True)
        optimizer = build_optimizer(OptimConfig(), model)
        for _ in range(steps):
            step(model, optimizer)
        return model, optimizer

    def step(model: RNNClassifier, optimizer: OptimizerGroup) -> None:
        tokens, lengths, labels = batch_of()
        optimizer.zero_grad()
        F.cross_entropy(model(tokens, lengths), labels).backward()
        optimizer.step()

    model, optimizer = trained(3)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
               tmp_path / "state.pt")
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    restored, restored_optimizer = trained(0)
    restored.load_state_dict(saved["model"])
    restored_optimizer.load_state_dict(saved["optimizer"])
    step(model, optimizer)
    step(restored, restored_optimizer)
    for a, b in zip(model.parameters(), restored.parameters()):
        assert torch.equal(a, b)


def test_optimizer_group_refuses_another_optimizers_state() -> None:
    model = RNNClassifier(30, 4, 8, "gru", 8, sparse_embedding=True)
    optimizer = build_optimizer(OptimConfig(), model)
    dense_state = torch.optim.AdamW(model.parameters()).state_dict()
    with pytest.raises(ValueError, match="optimizer state"):  # fit(): "cannot be resumed"
        optimizer.load_state_dict({"optimizers": [dense_state], "kinds": ["AdamW"]})


def test_resumed_sparse_run_ends_where_an_uninterrupted_run_ends(isolated: Path) -> None:
    data = write_tiny_agnews(isolated / "data")
    # A constant lr: the schedule's length would otherwise depend on train.epochs.
    straight = tiny_config(data, isolated / "runs", schedule="constant", warmup_fraction=0.0,
                           sparse_embedding=True)
    straight.train.name = "straight"
    fit(straight, log=lambda *_: None)
    first = tiny_config(data, isolated / "runs", schedule="constant", warmup_fraction=0.0,
                        sparse_embedding=True)
    first.train.epochs = 1
    first.train.name = "resumed"
    fit(first, log=lambda *_: None)
    run_dir = isolated / "runs" / "resumed"
    fit(load_resume_config(run_dir, ["train.epochs=2"]), resume_dir=run_dir, log=lambda *_: None)
    a = load_checkpoint(isolated / "runs" / "straight" / "last.pt")
    b = load_checkpoint(run_dir / "last.pt")
    assert a["optimizer_state"]["kinds"] == ["AdamW", "SparseAdam"]
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key


def test_runs_saved_before_sparse_embedding_resume_dense(isolated: Path) -> None:
    data = write_tiny_agnews(isolated / "data")
    config = tiny_config(data, isolated / "runs", sparse_embedding=False)
    config.train.epochs = 1
    fit(config, log=lambda *_: None)
    run_dir = isolated / "runs" / "tiny"
    payload = load_checkpoint(run_dir / "last.pt")
    del payload["config"]["optim"]["sparse_embedding"]  # as an older rnnclf wrote it
    torch.save(payload, run_dir / "last.pt")
    resumed = load_resume_config(run_dir, ["train.epochs=2"])
    assert resumed.optim.sparse_embedding is False
    fit(resumed, resume_dir=run_dir, log=lambda *_: None)


# --- prefetch --------------------------------------------------------------------------------


def test_prefetch_yields_the_same_batches_in_the_same_order() -> None:
    split = encode_texts([["a"] * n for n in [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5] * 9],
                         list(range(99)), Vocab(["<pad>", "<unk>", "a"]))
    plain = list(epoch_batches(split, 8, 6, seed=1, epoch=2))
    for depth in (0, 1, 3):
        fetched = list(prefetch(epoch_batches(split, 8, 6, seed=1, epoch=2), depth))
        assert len(fetched) == len(plain)
        for a, b in zip(plain, fetched):
            assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.lengths, b.lengths)


def test_prefetch_applies_prepare_and_raises_producer_errors() -> None:
    assert list(prefetch(range(5), 2, lambda x: x * 10)) == [0, 10, 20, 30, 40]

    def broken():
        yield 1
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        list(prefetch(broken(), 2))


def test_prefetch_stops_its_thread_when_the_consumer_leaves_early() -> None:
    before = threading.active_count()
    items = prefetch(iter(range(10_000)), 2)
    assert next(items) == 0
    items.close()
    assert threading.active_count() == before


# --- presorted packing and pooling -----------------------------------------------------------


def test_training_batches_come_longest_first() -> None:
    lengths = torch.randint(1, 40, (500,), generator=torch.Generator().manual_seed(0))
    for indices in bucketed_batches(lengths, 16, torch.Generator().manual_seed(1), 5):
        assert (lengths[indices][:-1] >= lengths[indices][1:]).all()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("backend", [CpuBackend(), None], ids=["cpu-backend", "reference"])
def test_presorted_and_unsorted_rows_give_the_same_logits(cell: str, pooling: str,
                                                          backend: CpuBackend | None) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, cell, 8, num_layers=2, pooling=pooling,
                          backend=backend).eval()
    tokens, lengths, _ = batch_of()  # longest first
    shuffled = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.inference_mode():
        sorted_logits = model(tokens, lengths)
        shuffled_logits = model(tokens[shuffled], lengths[shuffled])
    assert torch.allclose(sorted_logits[shuffled], shuffled_logits, atol=1e-6)


@pytest.mark.parametrize("backend", [CpuBackend(), None], ids=["cpu-backend", "reference"])
def test_max_pooling_over_minus_inf_padding_matches_the_masked_max(
        backend: CpuBackend | None) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, "gru", 8, pooling="max", backend=backend).eval()
    tokens, lengths, _ = batch_of()
    with torch.inference_mode():
        packed = pack_padded_sequence(model.embedding(tokens), lengths, batch_first=True)
        states, _ = pad_packed_sequence(model.rnn(packed)[0], batch_first=True)
        expected = model.classifier(pool_states(states, lengths, "max"))
        assert torch.allclose(model(tokens, lengths), expected, atol=1e-6)


# --- precision -------------------------------------------------------------------------------


def test_fp16_needs_cuda() -> None:
    with pytest.raises(RnnclfError, match="fp16 needs a CUDA"):
        make_grad_scaler("fp16", torch.device("cpu"))
    if cpu_has_native_bf16():
        assert make_grad_scaler("bf16", torch.device("cpu")) is None
    else:
        with pytest.raises(RnnclfError, match="bf16 needs a CPU with native bf16"):
            make_grad_scaler("bf16", torch.device("cpu"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_precision_the_cpu_cannot_train_in_is_refused_before_the_run_folder(
        isolated: Path, monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    monkeypatch.setattr(rnnclf.device, "cpu_has_native_bf16", lambda: False)
    data = write_tiny_agnews(isolated / "data")
    config = tiny_config(data, isolated / "runs")
    config.train.device = "cpu"
    config.train.precision = precision
    with pytest.raises(RnnclfError, match=f"{precision} needs a C"):
        fit(config, log=lambda *_: None)
    assert not (isolated / "runs" / "tiny").exists()


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_trains_on_the_cpu(isolated: Path) -> None:
    data = write_tiny_agnews(isolated / "data")
    config = tiny_config(data, isolated / "runs")
    config.train.epochs = 1
    config.train.precision = "bf16"
    summary = fit(config, log=lambda *_: None)
    assert summary["epochs"][0]["train_loss"] == summary["epochs"][0]["train_loss"]  # not NaN


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("sparse", [True, False])
def test_cuda_training_in_each_precision(isolated: Path, precision: str, sparse: bool) -> None:
    data = write_tiny_agnews(isolated / "data")
    config = tiny_config(data, isolated / "runs", sparse_embedding=sparse)
    config.train.device = "cuda"
    config.train.precision = precision
    summary = fit(config, log=lambda *_: None)
    assert summary["device"].startswith("cuda")
    losses = [epoch["train_loss"] for epoch in summary["epochs"]]
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0]
    payload = load_checkpoint(isolated / "runs" / "tiny" / "last.pt")
    assert ("scaler_state" in payload) == (precision == "fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_run_resumes(isolated: Path) -> None:
    data = write_tiny_agnews(isolated / "data")
    config = tiny_config(data, isolated / "runs")
    config.train.device, config.train.precision, config.train.epochs = "cuda", "fp16", 1
    fit(config, log=lambda *_: None)
    run_dir = isolated / "runs" / "tiny"
    summary = fit(load_resume_config(run_dir, ["train.epochs=2"]), resume_dir=run_dir,
                  log=lambda *_: None)
    assert summary["epochs_run"] == 2


# --- preprocessing: faster, same result ------------------------------------------------------



def reference_clean(text: str) -> str:
    """clean_ag_news before the fast paths (with the module's own entity patterns)."""
    text = text.replace("\\", " ")
    text = text_module._NUMERIC_ENTITY.sub(r"&#\1;", text)
    text = text_module._NAMED_ENTITY.sub(r"&\1;", text)
    text = html.unescape(text)
    text = text_module._TAG.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def reference_tokenize(text: str) -> list[str]:
    text = text.lower().replace('"', "").replace("<br />", " ")
    return text.translate(_BASIC_ENGLISH_TABLE).split()


PIECES = st.sampled_from(["#39;", " #39;", "quot;", " quot;", "&amp;", "&lt;b&gt;", "<br />",
                          "<a href=x>", ">", "<", "\\", "'", '"', ".", ",", "(", ")", "!", "?",
                          ";", ":", " ", "\t", "\n", "\xa0", "\x1c", "\u2003", "Word", "it",
                          "s", "1", "nbsp;", "&#233;", "#", "&"])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=30).map("".join))
def test_fast_cleaning_and_tokenizing_match_the_reference(text: str) -> None:
    assert clean_ag_news(text) == reference_clean(text)
    assert tokenize(text) == reference_tokenize(text)
    assert tokenize(clean_ag_news(text)) == reference_tokenize(reference_clean(text))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "zz", "<unk>", "<pad>"]), max_size=6),
                max_size=8))
def test_encode_texts_matches_the_per_text_loop(token_lists: list[list[str]]) -> None:
    vocab = Vocab(["<pad>", "<unk>", "a", "b"])
    split = encode_texts(token_lists, [0] * len(token_lists), vocab)
    expected = [vocab.encode(tokens) or [1] for tokens in token_lists]
    assert split.lengths.tolist() == [len(ids) for ids in expected]
    assert split.tokens.tolist() == [i for ids in expected for i in ids]
    assert split.tokens.dtype == torch.int32


# --- the benchmark script --------------------------------------------------------------------


def test_bench_smoke_run_reports_every_measurement(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--smoke",
                             "--json", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    names = [row["name"] for row in report["training"]]
    assert [name.split()[0] for name in names[:6]] == ["rnn-uni", "rnn-bi", "lstm-uni",
                                                       "lstm-bi", "gru-uni", "gru-bi"]
    assert any("default" in name for name in names)
    for row in report["training"]:
        bf16 = ("inference_bf16_samples_s", "inference_bf16_over_train")
        for key in ("train_samples_s", "naive_samples_s", "speedup_vs_naive",
                    "fraction_of_matmul", "fraction_of_onednn_matmul", "inference_samples_s",
                    *(bf16 if cpu_has_native_bf16() else ())):
            assert row[key] > 0, key
    bf16 = ("onednn_bf16_gflops",) if cpu_has_native_bf16() else ()
    for key in ("gflops", "onednn_fp32_gflops", *bf16):
        assert report["matmul"][key] > 0, key
    assert report["preprocessing"]["first_s"] > report["preprocessing"]["cached_s"] > 0
    assert report["memory"]["peak_rss_mib"] > 50


def test_bench_rows_picks_rows_and_names_the_valid_ones(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "scripts" / "bench.py"), "--smoke", "--json",
               "--workdir", str(tmp_path), "--rows"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([*command, "gru-bi"], capture_output=True, text=True, timeout=600,
                            check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row["name"] for row in json.loads(result.stdout)["training"]] == ["gru-bi"]
    result = subprocess.run([*command, "gru-bi,gru-tri"], capture_output=True, text=True,
                            timeout=600, check=False, env=env)
    assert result.returncode != 0 and not result.stdout
    assert "no bench row named gru-tri; rows: rnn-uni, rnn-bi" in result.stderr


def test_gpu_bench_smoke_run_on_the_cpu() -> None:
    """scripts/gpu_bench.py (run by hand on a GPU machine) keeps working between GPU sessions."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--smoke",
                             "--device", "cpu", "--batch-sizes", "8", "16", "--json"],
                            capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert {(row["model"], row["precision"], row["batch_size"]) for row in rows} == {
        (model, precision, batch) for model in ("default", "bilstm2-256")
        for precision in ("fp32", "bf16")[:1 + cpu_has_native_bf16()]
        for batch in (8, 16)}  # no fp16 on the CPU, bf16 only where it is native
    for row in rows:
        assert "error" not in row, row
        assert row["train_samples_s"] > 0 and row["inference_samples_s"] > 0
        assert row["seconds_per_120k_epoch"] == pytest.approx(120_000 / row["train_samples_s"])
        assert row["gpu_utilisation_pct"] is None and row["peak_gpu_memory_mib"] is None
    refused = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--smoke",
                              "--device", "cuda:7"], capture_output=True, text=True, timeout=600,
                             check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    if not torch.cuda.is_available():
        assert refused.returncode == 1 and refused.stderr.startswith("error: --device cuda:7")


# --- the CPU padded path computes exactly what the reference path computes -------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padded_cpu_path_matches_the_reference_path(cell: str, bidirectional: bool,
                                                    pooling: str) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, cell, 8, num_layers=2, bidirectional=bidirectional,
                          pooling=pooling, dropout=0.0)
    tokens, lengths, labels = batch_of()
    shuffled = torch.tensor([3, 0, 5, 1, 4, 2])  # unsorted rows too
    tokens, lengths, labels = tokens[shuffled], lengths[shuffled], labels[shuffled]
    results = []
    for backend in (None, CpuBackend(max_padded_work=100.0)):  # reference; one padded run
        model.backend = backend
        model.zero_grad()
        logits = model(tokens, lengths)
        F.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (packed_logits, packed_grads), (padded_logits, padded_grads) = results
    assert torch.allclose(packed_logits, padded_logits, atol=1e-6)
    for packed_grad, padded_grad in zip(packed_grads, padded_grads):
        assert torch.allclose(packed_grad, padded_grad, atol=1e-6)


def test_padded_segments_bound_the_padding() -> None:
    assert padded_segments(torch.tensor([50, 1]), 2.0) == [(0, 2)]  # 100 positions, 51 tokens
    assert padded_segments(torch.tensor([1, 50, 1, 1]), 2.0) == [(0, 2), (2, 4)]
    assert padded_segments(torch.tensor([9, 5, 4, 1]), 2.0) == [(0, 4)]
    assert padded_segments(torch.tensor([7]), 2.0) == [(0, 1)]
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 400, (128,), generator=generator)
    ranked = lengths.sort(descending=True).values
    segments = padded_segments(lengths, 2.0)
    assert segments[0][0] == 0 and segments[-1][1] == 128
    assert all(end == next_start for (_, end), (next_start, _) in zip(segments, segments[1:]))
    for start, end in segments:
        rows = ranked[start:end]
        assert end - start == 1 or int(rows[0]) * len(rows) <= 2.0 * int(rows.sum())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "max", "attention"])
def test_heavily_padded_batches_run_padded_in_segments(monkeypatch: pytest.MonkeyPatch, cell: str,
                                                       pooling: str) -> None:
    """A batch with a few long texts splits into runs of similar length and gives the
    reference path's logits and gradients, rows in their order."""
    torch.manual_seed(0)
    model = RNNClassifier(30, 4, 8, cell, 8, num_layers=2, bidirectional=True, pooling=pooling,
                          dropout=0.0)
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([3, 40, 2, 5, 1, 17, 4, 3])  # unsorted; 8 x 40 = 320 for 75 tokens
    tokens = torch.randint(2, 30, (8, 44), generator=generator)  # padded past the longest too
    tokens[torch.arange(44).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    widths: list[int] = []
    original = CpuBackend._padded_forward

    def recorded(self: CpuBackend, model: RNNClassifier, embedded: torch.Tensor,
                 lengths: torch.Tensor) -> torch.Tensor:
        widths.append(embedded.size(1))
        return original(self, model, embedded, lengths)

    monkeypatch.setattr(CpuBackend, "_padded_forward", recorded)
    results = []
    for backend in (None, CpuBackend(max_padded_work=2.0)):  # the reference path first
        model.backend = backend
        model.zero_grad()
        logits = model(tokens, lengths)
        F.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    assert widths == [40, 4]  # runs [40, 17, 5] (120 positions, 62 tokens), [4, 3, 3, 2, 1]
    (packed_logits, packed_grads), (padded_logits, padded_grads) = results
    torch.testing.assert_close(padded_logits, packed_logits, atol=1e-6, rtol=1e-5)
    for packed_grad, padded_grad in zip(packed_grads, padded_grads, strict=True):
        torch.testing.assert_close(padded_grad, packed_grad, atol=1e-6, rtol=1e-5)
