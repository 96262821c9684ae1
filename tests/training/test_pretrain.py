"""`rnnclf pretrain` and fine-tuning from it: the language model's texts, resume, init_from,
vocabulary mapping, architecture checks, discriminative lr and gradual unfreezing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from agnews_support import write_agnews_folder
from robustness_support import generated_rows, quiet, tiny_overrides

from rnnclf.config.loading import load_config
from rnnclf.config.resume import load_resume_config
from rnnclf.data.dataset import prepare_training_data
from rnnclf.errors import RnnclfError
from rnnclf.models.classifier import RNNClassifier
from rnnclf.runs.checkpoint import load_checkpoint, load_model
from rnnclf.training.finetune import layer_depth, scaled_groups, unfreeze_for_epoch
from rnnclf.training.optimizers import build_optimizer
from rnnclf.training.pretrain import fit_language_model, language_model_texts, pretrain_config
from rnnclf.training.trainer import Trainer


def _marked_rows(count: int, seed: int, prefix: str) -> list[tuple[str, str, str]]:
    """Rows whose title starts with a token of their own: `{prefix}{i}`."""
    return [(label, f"{prefix}{index} {title}", text)
            for index, (label, title, text) in enumerate(generated_rows(count, seed))]


@pytest.fixture
def marked_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RNNCLF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return write_agnews_folder(tmp_path / "data", _marked_rows(200, 1, "trainmark"),
                               _marked_rows(40, 2, "testmark"))


def _config(data: Path, runs: Path, *extra: str, name: str = "tiny"):
    return load_config(None, [*tiny_overrides(data, runs, name=name), "pretrain.batch_size=8",
                              "pretrain.val_fraction=0.1", *extra])


def _pretrain(data: Path, runs: Path, *extra: str) -> Path:
    config = pretrain_config(_config(data, runs, *extra))
    fit_language_model(config, log=quiet)
    return runs / config.train.name


def test_no_validation_or_test_text_reaches_the_language_model(marked_data: Path,
                                                               tmp_path: Path) -> None:
    """Every row carries a marker token of its own: the language model's texts (train and
    held-out) are exactly the classifier's training rows, none of its validation rows, none
    of the test file's; and its vocabulary never saw a validation or test marker."""
    config = _config(marked_data, tmp_path / "runs")
    lm_data, unlabeled = language_model_texts(config)
    classifier_data = prepare_training_data(config.data)
    itos = lm_data.vocab.itos

    def markers(split) -> list[str]:
        return [itos[int(split.tokens[offset])] for offset in split.offsets]

    train_markers = set(markers(classifier_data.train))
    val_markers = set(markers(classifier_data.val))
    assert len(train_markers) == 180 and all(m.startswith("trainmark") for m in train_markers)
    assert val_markers == {"<unk>"}  # the vocabulary holds no validation-only token
    seen = markers(lm_data.train) + markers(lm_data.val)
    assert unlabeled == 0
    assert sorted(seen) == sorted(train_markers)  # each training row once, nothing else
    assert not any(token.startswith("testmark") for token in itos)
    # The flat token stream holds only those texts (no shared tensor with validation rows in it).
    assert len(lm_data.train.tokens) == int(lm_data.train.lengths.sum())
    assert 1 not in lm_data.train.tokens[lm_data.train.offsets].tolist()


def test_unlabeled_files_join_the_training_texts(marked_data: Path, tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("football coach season\n\nshares profit\n")
    (tmp_path / "more.jsonl").write_text(json.dumps({"text": "linux browser chip"}) + "\n")
    files = f"{tmp_path / 'more.txt'},{tmp_path / 'more.jsonl'}"
    config = _config(marked_data, tmp_path / "runs", f"pretrain.unlabeled_files={files}")
    lm_data, unlabeled = language_model_texts(config)
    assert unlabeled == 3
    last = lm_data.train.tokens[lm_data.train.offsets[-1]:].tolist()
    assert [lm_data.vocab.itos[i] for i in last] == ["linux", "browser", "chip"]


def test_a_missing_unlabeled_file_is_one_clear_error(marked_data: Path, tmp_path: Path) -> None:
    config = _config(marked_data, tmp_path / "runs", "pretrain.unlabeled_files=nowhere.txt")
    with pytest.raises(RnnclfError, match="nowhere.txt does not exist"):
        language_model_texts(config)


def test_pretrain_writes_a_run_folder_with_perplexity_and_resumes(marked_data: Path,
                                                                   tmp_path: Path) -> None:
    run = _pretrain(marked_data, tmp_path / "runs", "pretrain.epochs=1")
    assert run.name == "tiny_lm"
    assert {"config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.json"} <= {
        path.name for path in run.iterdir()}
    first = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(first) == 1 and first[0]["val_ppl"] > 1 and first[0]["train_ppl"] > 1
    assert load_checkpoint(run / "best.pt")["language_model"] is True
    with pytest.raises(RnnclfError, match="is a language model from `rnnclf pretrain`"):
        load_model(run / "best.pt")
    resumed = load_resume_config(run, ["train.epochs=3"])
    summary = fit_language_model(resumed, resume_dir=run, log=quiet)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[0] == first[0]
    assert summary["epochs_run"] == 3
    assert records[2]["train_ppl"] < records[0]["train_ppl"]  # it learns


def _set_up(config) -> Trainer:
    trainer = Trainer(config, log=quiet)
    trainer.setup(contextlib.ExitStack())
    return trainer


def test_init_from_loads_the_encoder_weights(marked_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = _pretrain(marked_data, runs, "pretrain.epochs=1")
    lines: list[str] = []
    config = _config(marked_data, runs, "model.init_from=tiny_lm", name="fine")
    trainer = Trainer(config, log=lines.append)
    trainer.setup(contextlib.ExitStack())
    saved = load_checkpoint(run / "best.pt")["model_state"]
    model = trainer.model
    torch.testing.assert_close(model.embedding.weight, saved["embedding.weight"])
    for name, value in model.rnn.state_dict().items():
        torch.testing.assert_close(value, saved[f"rnn.{name}"])
    assert any("language model" in line and "same vocabulary" in line for line in lines), lines


def test_init_from_maps_a_different_vocabulary(marked_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = _pretrain(marked_data, runs, "pretrain.epochs=1")
    lines: list[str] = []
    config = _config(marked_data, runs, f"model.init_from={run}", "data.min_freq=2",
                     name="fine")
    trainer = Trainer(config, log=lines.append)
    trainer.setup(contextlib.ExitStack())
    payload = load_checkpoint(run / "best.pt")
    saved_index = {token: i for i, token in enumerate(payload["vocab"])}
    vocab = trainer.data.vocab
    assert vocab.itos != payload["vocab"]
    for token in ("football", "shares", "<unk>"):
        torch.testing.assert_close(trainer.model.embedding.weight[vocab.stoi[token]],
                                   payload["model_state"]["embedding.weight"][saved_index[token]])
    assert any(f"vocabulary mapped: {len(vocab):,} of {len(vocab):,}" in line
               for line in lines), lines


def test_init_from_refuses_another_architecture(marked_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _pretrain(marked_data, runs, "pretrain.epochs=1")
    config = _config(marked_data, runs, "model.init_from=tiny_lm", "model.hidden_size=6",
                     name="fine")
    with pytest.raises(RnnclfError, match=r"model.hidden_size=8, this model has "
                                          r"model.hidden_size=6"):
        _set_up(config)
    config = _config(marked_data, runs, "model.init_from=nothing_here", name="fine2")
    with pytest.raises(RnnclfError, match="run `rnnclf pretrain` first"):
        _set_up(config)


def test_layer_groups_and_discriminative_learning_rates() -> None:
    model = RNNClassifier(30, 4, embedding_dim=8, hidden_size=8, num_layers=2, ngram_order=2,
                          ngram_buckets=64)
    assert layer_depth("classifier.weight", 2) == 0
    assert layer_depth("ngram_bag.table.weight", 2) == 0
    assert layer_depth("rnn.weight_ih_l1_reverse", 2) == 1
    assert layer_depth("rnn.bias_hh_l0", 2) == 2
    assert layer_depth("embedding.weight", 2) == 3
    groups = scaled_groups(model, [{"params": list(model.parameters()), "weight_decay": 0.0}],
                           2.6)
    scales = {round(group["lr_scale"], 6) for group in groups}
    assert scales == {1.0, round(1 / 2.6, 6), round(2.6 ** -2, 6), round(2.6 ** -3, 6)}
    config = load_config(None, ["optim.discriminative_lr=2.6", "optim.sparse_embedding=false"])
    optimizer = build_optimizer(config.optim, model)
    embedding_group = next(group for group in optimizer.param_groups
                           if any(p is model.embedding.weight for p in group["params"]))
    assert embedding_group["lr_scale"] == pytest.approx(2.6 ** -3)


def test_gradual_unfreezing_trains_one_more_group_per_epoch() -> None:
    model = RNNClassifier(30, 4, embedding_dim=8, hidden_size=8, num_layers=2)
    line = unfreeze_for_epoch(model, 0)
    assert line.endswith("training output layer")
    assert model.classifier.weight.requires_grad and not model.rnn.weight_ih_l1.requires_grad
    unfreeze_for_epoch(model, 1)
    assert model.rnn.weight_ih_l1.requires_grad and not model.rnn.weight_ih_l0.requires_grad
    unfreeze_for_epoch(model, 3, keep_embedding_frozen=True)
    assert model.rnn.weight_ih_l0.requires_grad and not model.embedding.weight.requires_grad
    assert unfreeze_for_epoch(model, 5).endswith("gru layer 0, embedding")


def test_fine_tuning_with_every_lever_runs(marked_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _pretrain(marked_data, runs, "pretrain.epochs=1")
    lines: list[str] = []
    config = _config(marked_data, runs, "model.init_from=tiny_lm", "optim.gradual_unfreeze=true",
                     "optim.discriminative_lr=2.6", "train.epochs=3", name="fine")
    trainer = Trainer(config, log=lines.append)
    with contextlib.ExitStack() as claim:
        trainer.setup(claim)
        before = trainer.model.embedding.weight.detach().clone()
        trainer.train()
    assert any("epoch 1: training output layer" in line for line in lines), lines
    assert any(line.endswith("gru layer 0, embedding") for line in lines), lines
    assert not torch.equal(before, trainer.model.embedding.weight)  # unfrozen by epoch 3
