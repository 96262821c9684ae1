"""curves.png after training, confusion.png after eval, `rnnclf plot`, and no matplotlib."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.errors import RnnclfError
from rnnclf.training import plots

PNG = b"\x89PNG\r\n\x1a\n"
RECORDS = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "train_acc": 0.5 + e / 10,
            "val_acc": 0.45 + e / 10} for e in (1, 2, 3)]
REPORT = {"labels": ["World", "Sports", "Sci/Tech"], "confusion_matrix": [[8, 1, 1], [0, 9, 1],
                                                                       [2, 0, 0]],
          "accuracy": 0.77, "macro_f1": 0.6, "num_examples": 22}


def write_run(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (folder / "eval.json").write_text(json.dumps(REPORT))
    (folder / "eval_val.json").write_text(json.dumps(REPORT))
    return folder


def test_plot_command_redraws_curves_and_confusion(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = write_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    for name in ("curves.png", "confusion.png", "confusion_val.png"):
        data = (run / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name


def test_confusion_handles_a_class_without_examples(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = dict(REPORT, confusion_matrix=[[5, 0, 0], [0, 5, 0], [0, 0, 0]])
    assert plots.plot_confusion(report, tmp_path / "c.png").read_bytes().startswith(PNG)


def test_plot_of_an_empty_folder_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="no metrics.jsonl or eval.json"):
        plots.redraw(tmp_path)


def test_without_matplotlib_a_note_not_a_failure(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now fails
    notes: list[str] = []
    drawn = plots.try_plot(lambda: plots.plot_curves(RECORDS, tmp_path / "c.png"), notes.append)
    assert drawn is None and not (tmp_path / "c.png").exists()
    assert len(notes) == 1 and "pip install 'rnnclf[plot]'" in notes[0]
    with pytest.raises(RnnclfError, match=r"rnnclf\[plot\]"):
        plots.redraw(write_run(tmp_path / "run"))
