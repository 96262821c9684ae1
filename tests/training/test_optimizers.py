"""The optimizers: fused AdamW, the sparse embedding with SparseAdam beside a dense AdamW
(gradients, clipping, state round trips) and resuming runs trained with either."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from agnews_support import make_keyword_agnews
from tiny_support import batch_of, tiny_config
from torch import nn

from rnnclf.config.resume import load_resume_config
from rnnclf.config.schema import Config, OptimConfig
from rnnclf.models.build import build_model, uses_sparse_embedding
from rnnclf.models.classifier import RNNClassifier
from rnnclf.runs.checkpoint import load_checkpoint
from rnnclf.training.optimizers import OptimizerGroup, build_optimizer, clip_grad_norm
from rnnclf.training.trainer import fit


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


def test_resumed_sparse_run_ends_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    data = make_keyword_agnews(tmp_path / "data")
    # A constant lr: the schedule's length would otherwise depend on train.epochs.
    straight = tiny_config(data, tmp_path / "runs", schedule="constant", warmup_fraction=0.0,
                           sparse_embedding=True)
    straight.train.name = "straight"
    fit(straight, log=lambda *_: None)
    first = tiny_config(data, tmp_path / "runs", schedule="constant", warmup_fraction=0.0,
                        sparse_embedding=True)
    first.train.epochs = 1
    first.train.name = "resumed"
    fit(first, log=lambda *_: None)
    run_dir = tmp_path / "runs" / "resumed"
    fit(load_resume_config(run_dir, ["train.epochs=2"]), resume_dir=run_dir, log=lambda *_: None)
    a = load_checkpoint(tmp_path / "runs" / "straight" / "last.pt")
    b = load_checkpoint(run_dir / "last.pt")
    assert a["optimizer_state"]["kinds"] == ["AdamW", "SparseAdam"]
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key


def test_runs_saved_before_sparse_embedding_resume_dense(tmp_path: Path) -> None:
    data = make_keyword_agnews(tmp_path / "data")
    config = tiny_config(data, tmp_path / "runs", sparse_embedding=False)
    config.train.epochs = 1
    fit(config, log=lambda *_: None)
    run_dir = tmp_path / "runs" / "tiny"
    payload = load_checkpoint(run_dir / "last.pt")
    del payload["config"]["optim"]["sparse_embedding"]  # as an older rnnclf wrote it
    torch.save(payload, run_dir / "last.pt")
    resumed = load_resume_config(run_dir, ["train.epochs=2"])
    assert resumed.optim.sparse_embedding is False
    fit(resumed, resume_dir=run_dir, log=lambda *_: None)
