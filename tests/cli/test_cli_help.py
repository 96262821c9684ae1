"""Every command and option explains itself; completion scripts and --version work."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import typer
import typer.completion
from typer.testing import CliRunner

import rnnclf.cli
from rnnclf import __version__
from rnnclf.cli.app import app


def all_commands() -> list[tuple[str, object]]:
    found = []

    def walk(command: object, path: str) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "rnnclf")
    return found


def test_every_command_and_option_has_help() -> None:
    commands = all_commands()
    names = {path for path, _ in commands}
    assert {"rnnclf train", "rnnclf eval", "rnnclf predict", "rnnclf export", "rnnclf plot",
            "rnnclf config show", "rnnclf config validate", "rnnclf data download",
            "rnnclf data info"} <= names
    missing = [f"{path}: {'(command)' if param is None else param.name}"
               for path, command in commands
               for param in [None, *command.params]  # type: ignore[attr-defined]
               if not (getattr(command, "help", None) if param is None
                       else getattr(param, "help", None))]
    assert missing == []


def test_help_of_every_command_renders() -> None:
    runner = CliRunner()
    for path, _ in all_commands():
        result = runner.invoke(app, [*path.split()[1:], "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_completion_script_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # --show-completion is a flag that detects the calling shell from the process tree, which a
    # test run launched outside a shell lacks; pin it.
    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    runner = CliRunner()
    result = runner.invoke(app, ["--show-completion"])
    assert result.exit_code == 0 and "complete" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_console_script_names_the_cli_package_main() -> None:
    """pyproject's `rnnclf` script is rnnclf.cli:main (python -m rnnclf runs it too)."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    scripts = pyproject.read_text(encoding="utf-8").partition("[project.scripts]")[2]
    match = re.search(r'^rnnclf = "([^"]+)"', scripts, re.MULTILINE)
    assert match is not None, "pyproject.toml has no rnnclf console script"
    target = match.group(1)
    module_name, _, function_name = target.partition(":")
    assert target == "rnnclf.cli:main"
    assert getattr(importlib.import_module(module_name), function_name) is rnnclf.cli.main
