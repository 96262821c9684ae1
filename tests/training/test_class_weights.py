"""optim.class_weights: loading, the balanced formula, the weighted loss; runs that use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from robustness_support import tiny_overrides, write_dataset

from rnnclf.config import load_config, to_yaml
from rnnclf.config.resume import load_resume_config
from rnnclf.errors import RnnclfError
from rnnclf.runs.atomic import read_jsonl
from rnnclf.training.class_weights import (
    balanced_weights,
    class_counts,
    resolve_class_weights,
    weighted_cross_entropy,
)
from rnnclf.training.trainer import fit

# --- loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "loaded"), [
    ("none", "none"), ("balanced", "balanced"), ("[1, 19]", [1.0, 19.0]), ("1,19", [1.0, 19.0]),
    ("[0.5, 2, 1e-3]", [0.5, 2.0, 0.001]), ("[0, 1]", [0.0, 1.0]),
])
def test_class_weights_load_from_overrides(typed: str, loaded: object) -> None:
    assert load_config(None, [f"optim.class_weights={typed}"]).optim.class_weights == loaded


def test_class_weights_default_is_none_and_a_list_round_trips_through_yaml(
        tmp_path: Path) -> None:
    assert load_config().optim.class_weights == "none"
    config = load_config(None, ["optim.class_weights=[1, 19]"])
    path = tmp_path / "weights.yaml"
    path.write_text(to_yaml(config), encoding="utf-8")
    assert load_config(path) == config


@pytest.mark.parametrize(("typed", "fix"), [
    ("balancd", "did you mean 'balanced'"),
    ("[1, -2]", "finite number >= 0"),
    ("[1, .inf]", "finite number >= 0"),
    ("[0, 0]", "at least one weight must be above 0"),
    ("[1]", "one weight per class"),
    ("3", "one weight per class"),
    ("[1, x]", "one weight per class"),
    ("[1, true]", "one weight per class"),
    ("{a: 1}", "one weight per class"),
])
def test_wrong_class_weights_are_one_line_naming_the_fix(typed: str, fix: str) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(None, [f"optim.class_weights={typed}"])
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith("optim.class_weights: ")
    assert fix in message


def test_class_weights_of_the_wrong_length_stop_the_run_before_training(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")  # 4 classes
    config = load_config(None, tiny_overrides(data, tmp_path / "runs",
                                              **{"optim.class_weights": "[1, 2, 3]"}))
    with pytest.raises(RnnclfError) as excinfo:
        fit(config, log=lambda *_: None)
    message = str(excinfo.value)
    assert "\n" not in message
    assert "optim.class_weights has 3 weight(s) but the training data has 4 classes" in message
    assert "give one weight per class in that order, or use balanced" in message
    assert not (tmp_path / "runs" / "tiny" / "last.pt").exists()


# --- the balanced formula ------------------------------------------------------------------------


def test_balanced_is_n_samples_over_n_classes_times_count() -> None:
    labels = torch.tensor([0] * 95 + [1] * 5)
    assert class_counts(labels, 2) == [95, 5]
    assert balanced_weights([95, 5], ["common", "rare"]) == pytest.approx(
        [100 / (2 * 95), 100 / (2 * 5)])
    weights = resolve_class_weights("balanced", torch.tensor([0, 0, 0, 1, 2, 2]), ["a", "b", "c"])
    assert weights == pytest.approx([6 / 9, 6 / 3, 6 / 6])
    # every row weighs 1 on average: sum over rows of weight(label) = n_samples
    assert sum(w * c for w, c in zip(weights, [3, 1, 2])) == pytest.approx(6)


def test_balanced_matches_scikit_learn() -> None:
    class_weight = pytest.importorskip("sklearn.utils.class_weight")
    import numpy

    labels = torch.tensor([0] * 37 + [1] * 5 + [2] * 120 + [3] * 1)
    ours = resolve_class_weights("balanced", labels, ["a", "b", "c", "d"])
    theirs = class_weight.compute_class_weight("balanced", classes=numpy.arange(4),
                                               y=labels.numpy())
    assert ours == pytest.approx(theirs.tolist())


def test_balanced_refuses_a_class_without_training_rows() -> None:
    with pytest.raises(RnnclfError, match="class 'c' has no row in the training split"):
        resolve_class_weights("balanced", torch.tensor([0, 1, 1]), ["a", "b", "c"])


def test_none_and_explicit_weights_resolve_as_given() -> None:
    labels = torch.tensor([0, 1])
    assert resolve_class_weights("none", labels, ["a", "b"]) is None
    assert resolve_class_weights([1.0, 19.0], labels, ["a", "b"]) == [1.0, 19.0]


# --- the weighted loss ---------------------------------------------------------------------------


def test_weighted_loss_equals_torch_weight_without_label_smoothing() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 3, generator=generator)
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 0, 0, 1])
    weights = torch.tensor([0.5, 2.0, 7.0])
    assert weighted_cross_entropy(logits, labels, weights, 0.0).item() == pytest.approx(
        F.cross_entropy(logits, labels, weight=weights).item(), rel=1e-6)


def test_weighted_loss_weighs_whole_rows_with_label_smoothing() -> None:
    """Each row's smoothed loss times its own class's weight, so equal weights change nothing and
    a row's smoothing term does not pull towards the heavy class (as torch's weight= does)."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 2, generator=generator)
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    per_row = F.cross_entropy(logits, labels, reduction="none", label_smoothing=0.1)
    weights = torch.tensor([0.5, 10.0])
    expected = (per_row * weights[labels]).sum() / weights[labels].sum()
    assert weighted_cross_entropy(logits, labels, weights, 0.1).item() == pytest.approx(
        expected.item(), rel=1e-6)
    assert weighted_cross_entropy(logits, labels, torch.tensor([3.0, 3.0]), 0.1).item() == \
        pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item(), rel=1e-6)
    # the optimum of a majority row with weights (0.5, 10): torch's weight= smoothing puts it
    # near 50/50, whole-row weighting at the smoothed target (95% majority)
    logit = torch.zeros(1, 2, requires_grad=True)
    optimizer = torch.optim.SGD([logit], lr=0.5)
    for _ in range(500):
        optimizer.zero_grad()
        weighted_cross_entropy(logit, torch.tensor([0]), weights, 0.1).backward()
        optimizer.step()
    assert torch.softmax(logit.detach(), 1)[0, 0].item() == pytest.approx(0.95, abs=1e-3)


def test_a_batch_whose_rows_all_weigh_zero_adds_nothing() -> None:
    logits = torch.randn(3, 2, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.tensor([0, 0, 0]), torch.tensor([0.0, 1.0]), 0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros(3, 2))


# --- a run ---------------------------------------------------------------------------------------


def test_a_run_logs_and_records_the_resolved_weights(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    lines: list[str] = []
    config = load_config(None, tiny_overrides(data, tmp_path / "runs", epochs=1,
                                              **{"optim.class_weights": "balanced"}))
    summary = fit(config, log=lines.append)
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    assert list(summary["class_weights"]) == labels
    assert all(weight > 0 for weight in summary["class_weights"].values())
    written = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert written["class_weights"] == summary["class_weights"]
    assert any(line.startswith("class weights (balanced, from the training split): World ")
               for line in lines)
    explicit = load_config(None, tiny_overrides(data, tmp_path / "runs", name="explicit",
                                                epochs=1,
                                                **{"optim.class_weights": "[1, 2, 3, 4]"}))
    assert fit(explicit, log=lambda *_: None)["class_weights"] == dict(
        zip(labels, [1.0, 2.0, 3.0, 4.0]))


def test_weights_change_training_and_none_keeps_the_unweighted_loss(
        tmp_path: Path) -> None:
    """Equal weights train exactly the unweighted model; unequal ones train another."""
    data = write_dataset(tmp_path / "data")

    def final_loss(name: str, weights: str) -> float:
        config = load_config(None, tiny_overrides(data, tmp_path / "runs", name=name, epochs=1,
                                                  **{"optim.class_weights": weights}))
        return fit(config, log=lambda *_: None)["epochs"][-1]["val_loss"]

    unweighted = final_loss("none", "none")
    assert final_loss("equal", "[1, 1, 1, 1]") == pytest.approx(unweighted, rel=1e-6)
    assert final_loss("skewed", "[1, 1, 1, 20]") != pytest.approx(unweighted, rel=1e-3)


def test_a_weighted_run_chosen_by_macro_f1_resumes(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "runs" / "tiny"
    first = fit(load_config(None, tiny_overrides(
        data, tmp_path / "runs", epochs=1,
        **{"optim.class_weights": "balanced", "train.select_by": "macro_f1"})),
        log=lambda *_: None)
    with pytest.raises(RnnclfError, match="optim.class_weights cannot change"):
        load_resume_config(run, ["optim.class_weights=none"])
    lines: list[str] = []
    summary = fit(load_resume_config(run, ["train.epochs=2"]), resume_dir=run, log=lines.append)
    assert any(line.startswith("resuming") for line in lines)
    records = read_jsonl(run / "metrics.jsonl")
    assert [record["epoch"] for record in records] == [1, 2] == [
        record["epoch"] for record in summary["epochs"]]
    assert summary["best_val_macro_f1"] == max(record["val_macro_f1"] for record in records)
    assert summary["class_weights"] == first["class_weights"]


def test_ensemble_members_train_with_the_weights_and_the_summary_records_them(
        tmp_path: Path) -> None:
    from rnnclf.inference.evaluate import evaluate_checkpoint
    from rnnclf.runs.checkpoint import load_checkpoint
    from rnnclf.training.ensemble import fit_ensemble

    data = write_dataset(tmp_path / "data")
    config = load_config(None, tiny_overrides(
        data, tmp_path / "runs", name="ens", epochs=1,
        **{"train.ensemble": 2, "optim.class_weights": "[1, 2, 3, 4]",
           "train.select_by": "macro_f1"}))
    summary = fit_ensemble(config, log=lambda *_: None)
    run = tmp_path / "runs" / "ens"
    for index in (1, 2):
        member = json.loads((run / f"member_{index}" / "summary.json").read_text())
        assert list(member["class_weights"].values()) == [1.0, 2.0, 3.0, 4.0]
        saved = load_checkpoint(run / f"member_{index}" / "best.pt")["config"]["optim"]
        assert saved["class_weights"] == [1.0, 2.0, 3.0, 4.0]
        assert summary["members"][index - 1]["best_val_macro_f1"] == member["best_val_macro_f1"]
    assert list(summary["class_weights"].values()) == [1.0, 2.0, 3.0, 4.0]
    report = evaluate_checkpoint(run / "best.pt", split="val", write=False)
    assert summary["val_macro_f1"] == pytest.approx(report["macro_f1"])


def test_class_weights_are_refused_for_multi_label_data_before_any_run_folder(
        tmp_path: Path) -> None:
    from multilabel_support import multilabel_config, write_set

    config = multilabel_config(write_set(tmp_path / "data"), tmp_path / "runs")
    config.optim.class_weights = "balanced"
    with pytest.raises(RnnclfError) as excinfo:
        fit(config, log=lambda *_: None)
    assert "with data.multi_label set optim.class_weights=none" in str(excinfo.value)
    assert not (tmp_path / "runs" / "multi").exists()
