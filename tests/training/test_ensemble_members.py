"""Diverse ensembles (`train.ensemble_members`): one override mapping per member, each member an
ordinary run of its own model, best.pt averaging models that differ."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from robustness_support import run_cli, tiny_overrides, write_dataset

from rnnclf.config import load_config
from rnnclf.config.loading import member_config
from rnnclf.errors import Interrupted, RnnclfError
from rnnclf.inference.evaluate import evaluate_checkpoint
from rnnclf.inference.export import export_checkpoint
from rnnclf.models.ensemble import EnsembleClassifier
from rnnclf.runs.checkpoint import load_checkpoint, load_model
from rnnclf.training import epoch as epoch_module
from rnnclf.training.ensemble import fit_ensemble, load_run_config
from rnnclf.training.pretrain import fit_language_model, pretrain_config

MEMBERS = ("[{model.cell: lstm, model.ngram_order: 0}, "
           "{model.ngram_order: 2, model.ngram_buckets: 64}]")


def quiet(*_: Any) -> None:
    pass


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")


def test_members_resolve_to_their_own_configs() -> None:
    config = load_config(None, [f"train.ensemble_members={MEMBERS}", "model.hidden_size=16"])
    assert config.train.ensemble == 2  # one member per mapping
    first, second = member_config(config, 0), member_config(config, 1)
    assert (first.model.cell, first.model.ngram_order) == ("lstm", 0)
    assert (second.model.cell, second.model.ngram_buckets) == ("gru", 64)
    assert first.model.hidden_size == second.model.hidden_size == 16  # the base is shared
    assert first.train.ensemble == 1 and first.train.ensemble_members == []
    assert load_config(None).train.ensemble_members == []


@pytest.mark.parametrize(("members", "needle"), [
    ("[{model.cel: lstm}, {}]", "train.ensemble_members[0]: unknown key 'model.cel'"),
    ("[{}, {model.cell: lsm}]", "train.ensemble_members[1]: model.cell: 'lsm'"),
    ("[{data.min_freq: 1}, {}]", "'data.min_freq' is not allowed"),
    ("[{model: {cell: lstm}}, {}]", "'model' is not allowed"),
    ("[{train.seed: 3}, {}]", "train.seed is shared by every member"),
    ("[{model.pretrained_vocab: 10}, {}]", "model.pretrained_vocab is shared"),
    ("lstm", "give a list of mappings"),
    ("[{model.cell: lstm}]", "two or more members"),
])
def test_member_mistakes_are_one_line(members: str, needle: str) -> None:
    with pytest.raises(RnnclfError, match=None) as caught:
        load_config(None, [f"train.ensemble_members={members}"])
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_ensemble_size_must_match_the_members() -> None:
    with pytest.raises(RnnclfError, match="does not match the 2 train.ensemble_members"):
        load_config(None, [f"train.ensemble_members={MEMBERS}", "train.ensemble=3"])
    assert load_config(None, [f"train.ensemble_members={MEMBERS}",
                              "train.ensemble=2"]).train.ensemble == 2


def test_diverse_members_train_and_load_as_one_averaged_checkpoint(
        data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    config = load_config(None, tiny_overrides(data_dir, runs, name="div", epochs=1, **{
        "train.ensemble_members": MEMBERS, "train.seed": 5}))
    summary = fit_ensemble(config, log=quiet)
    run_dir = runs / "div"
    saved = [load_checkpoint(run_dir / f"member_{k}" / "best.pt")["config"] for k in (1, 2)]
    assert [entry["model"]["cell"] for entry in saved] == ["lstm", "gru"]
    assert [entry["model"]["ngram_order"] for entry in saved] == [0, 2]
    assert [entry["train"]["seed"] for entry in saved] == [5, 1005]

    loaded = load_model(run_dir / "best.pt")
    assert isinstance(loaded.model, EnsembleClassifier)
    kinds = [type(member.rnn).__name__ for member in loaded.model.members]
    assert kinds == ["LSTM", "GRU"]
    assert loaded.model.members[0].ngram_bag is None and loaded.model.members[1].ngram_bag
    report = evaluate_checkpoint(run_dir / "best.pt", split="val", write=False)
    assert summary["best_val_acc"] == pytest.approx(report["accuracy"])
    written = json.loads((run_dir / "summary.json").read_text())
    assert written["ensemble"] == 2
    assert written["members"][0]["overrides"] == {"model.cell": "lstm", "model.ngram_order": 0}


def test_diverse_ensemble_through_the_cli(data_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    overrides = tiny_overrides(data_dir, runs, name="cli_div", epochs=1,
                               **{"train.ensemble_members": MEMBERS})
    result = run_cli(["train", *overrides], capsys)
    assert result.code == 0, result.stderr
    assert "member 1: model.cell=lstm, model.ngram_order=0" in result.stdout
    assert "ensemble of 2: val accuracy" in result.stdout
    result = run_cli(["predict", "--checkpoint", runs / "cli_div" / "best.pt", "--json",
                      "stocks fall"], capsys)
    assert result.code == 0, result.stderr
    script_path, info_path = export_checkpoint(runs / "cli_div" / "best.pt", "torchscript",
                                               tmp_path / "m.pt")
    assert json.loads(info_path.read_text())["ensemble"] == 2 and script_path.is_file()

    bad = tiny_overrides(data_dir, runs, name="bad", **{
        "train.ensemble_members": "[{model.cell: lstm}, {data.min_freq: 3}]"})
    run_cli(["train", *bad], capsys).assert_one_error_line("data.min_freq")


def test_explained_config_with_members_loads_again(tmp_path: Path) -> None:
    from rnnclf.config.explain import show

    path = tmp_path / "explained.yaml"
    path.write_text(show(None, [f"train.ensemble_members={MEMBERS}"], explain=True),
                    encoding="utf-8")
    assert load_config(path).train.ensemble_members == load_config(
        None, [f"train.ensemble_members={MEMBERS}"]).train.ensemble_members


def test_a_member_fine_tunes_from_a_pretrained_run_named_in_the_users_runs_dir(
        data_dir: Path, tmp_path: Path) -> None:
    """`{model.init_from: NAME}` means runs_dir/NAME as for a single run, not a folder inside
    the ensemble's own; a name that is not there stops the run before any member trains."""
    runs = tmp_path / "runs"
    fit_language_model(pretrain_config(load_config(None, tiny_overrides(
        data_dir, runs, name="enc", epochs=1, **{"pretrain.batch_size": 8}))), log=quiet)
    lines: list[str] = []
    config = load_config(None, tiny_overrides(data_dir, runs, name="mix", epochs=1, **{
        "train.ensemble_members": "[{model.init_from: enc_lm}, {}]"}))
    fit_ensemble(config, log=lines.append)
    assert f"init from {(runs / 'enc_lm' / 'best.pt').resolve()} (language model)" in "\n".join(
        lines)
    saved = load_checkpoint(runs / "mix" / "member_1" / "best.pt")["config"]["model"]
    assert saved["init_from"] == str((runs / "enc_lm" / "best.pt").resolve())

    missing = load_config(None, tiny_overrides(data_dir, runs, name="gone", epochs=1, **{
        "train.ensemble_members": "[{}, {model.init_from: nowhere_lm}]"}))
    with pytest.raises(RnnclfError, match="model.init_from: no checkpoint .* nowhere_lm"):
        fit_ensemble(missing, log=quiet)
    assert not (runs / "gone" / "member_1").exists()  # nothing trained in vain


def test_a_member_stopped_midway_resumes_with_the_command_line_overrides(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in member 2 (which has overrides of its own), then --resume: member 2 continues
    from its last.pt with the command line's overrides, not with its member overrides."""
    runs = tmp_path / "runs"
    run_dir = runs / "again"
    config = load_config(None, tiny_overrides(data_dir, runs, name="again", epochs=2, **{
        "train.ensemble_members": MEMBERS}))
    original, calls = epoch_module._forward_loss, {"member_2": 0}

    def forward(*args: Any, **kwargs: Any) -> Any:
        if (run_dir / "member_1" / "summary.json").is_file():
            calls["member_2"] += 1
            if calls["member_2"] == 3:
                os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "_forward_loss", forward)
    with pytest.raises(Interrupted):
        fit_ensemble(config, log=quiet)
    monkeypatch.undo()
    assert (run_dir / "member_2" / "last.pt").is_file()
    lines: list[str] = []
    fit_ensemble(load_run_config(run_dir, ["train.progress=false"]), resume_dir=run_dir,
                 overrides=["train.progress=false"], log=lines.append)
    assert any("member 1/2: already trained" in line for line in lines)
    assert (run_dir / "member_2" / "summary.json").is_file() and (run_dir / "best.pt").is_file()
    member_2 = load_checkpoint(run_dir / "member_2" / "best.pt")["config"]["model"]
    assert (member_2["cell"], member_2["ngram_buckets"]) == ("gru", 64)
