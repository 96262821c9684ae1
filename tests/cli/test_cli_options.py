"""Choice options list and complete their values, help shows brackets, and train's --device and
--seed reach the config (and follow the --resume rules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
import yaml
from robustness_support import run_cli, tiny_overrides, write_dataset
from typer.testing import CliRunner

from rnnclf.cli.app import app


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # the help wraps lines; compare words


@pytest.mark.parametrize(("command", "shown"), [
    (["eval"], ["<test|val>", "<fp32|bf16|fp16>", "auto|cpu|cuda|cuda:N"]),
    (["predict"], ["<fp32|bf16|fp16>", "auto|cpu|cuda|cuda:N"]),
    (["export"], ["<onnx|torchscript|checkpoint>"]),
    (["train"], ["auto|cpu|cuda|cuda:N", "--seed <int>"]),
])
def test_help_lists_the_choices(command: list[str], shown: list[str]) -> None:
    text = help_text(*command)
    for choices in shown:
        assert choices in text, (command, choices, text)


def complete(words: str) -> list[str]:
    """What bash completion offers for the last word of `words`, through Typer's own hook."""
    env = {"_RNNCLF_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    result = CliRunner().invoke(app, [], env=env, prog_name="rnnclf")
    assert result.exit_code == 0, result.output
    return result.output.split()


def test_completion_completes_the_choices() -> None:
    assert complete("rnnclf eval --split ") == ["test", "val"]
    assert complete("rnnclf predict --precision b") == ["bf16"]
    assert complete("rnnclf export best.pt --format t") == ["torchscript"]
    assert complete("rnnclf eval --device cu") == ["cuda", "cuda:0"]
    assert complete("rnnclf train --device ") == ["auto", "cpu", "cuda", "cuda:0"]


def test_brackets_in_help_are_shown() -> None:
    """Every bracketed word of every help text (e.g. "needs rnnclf[export]") reaches --help."""
    checked = 0

    def walk(command: object, path: list[str]) -> None:
        nonlocal checked
        texts = [getattr(command, "help", None) or ""]
        texts += [getattr(param, "help", None) or "" for param in getattr(command, "params", [])]
        bracketed = [word for text in texts for word in re.findall(r"\S*\[[^\]\s]+\]\S*", text)]
        if bracketed:
            shown = help_text(*path)
            for word in bracketed:
                assert word in shown, (path, word)
                checked += 1
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    assert checked >= 1  # export's "onnx (needs rnnclf[export])" at least
    assert "onnx (needs rnnclf[export]), torchscript, or checkpoint" in help_text("export")


def test_a_refused_choice_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    result = run_cli(["eval", tmp_path / "best.pt", "--split", "train"], capsys)
    line = result.assert_one_error_line()
    assert line == "error: --split 'train' is not allowed; use test or val"
    line = run_cli(["export", tmp_path / "best.pt", "-f", "tflite"], capsys).assert_one_error_line()
    assert line == "error: --format 'tflite' is not allowed; use onnx, torchscript, checkpoint"
    line = run_cli(["eval", tmp_path / "best.pt", "--device", "gpu"], capsys
                   ).assert_one_error_line()
    assert line == "error: device 'gpu' is not allowed; use auto, cpu, cuda or cuda:N"


def printed_config(capsys: pytest.CaptureFixture[str], *args: object) -> dict:
    result = run_cli(["train", *args, "--print-config"], capsys)
    assert result.code == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_train_seed_and_device_reach_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    default = printed_config(capsys)["train"]
    assert (default["seed"], default["device"]) == (0, "auto")
    train = printed_config(capsys, "--seed", 7, "--device", "cpu")["train"]
    assert (train["seed"], train["device"]) == (7, "cpu")
    # They win over the same key given as an override.
    train = printed_config(capsys, "train.seed=3", "--seed", 5, "--set", "train.device=cuda:1",
                           "--device", "cpu")["train"]
    assert (train["seed"], train["device"]) == (5, "cpu")
    run_cli(["train", "--device", "gpu"], capsys).assert_one_error_line("train.device", "'gpu'")


def test_resume_takes_device_but_keeps_the_seed(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "data", train_rows=80, test_rows=8)
    overrides = tiny_overrides(data, tmp_path / "runs", epochs=1, **{"train.seed": 4})
    assert run_cli(["train", *overrides], capsys).code == 0
    run_dir = tmp_path / "runs" / "tiny"
    resumed = printed_config(capsys, "--resume", run_dir, "--device", "cpu")["train"]
    assert (resumed["seed"], resumed["device"]) == (4, "cpu")
    refused = run_cli(["train", "--resume", run_dir, "--seed", 9], capsys)
    refused.assert_one_error_line("train.seed cannot change")
