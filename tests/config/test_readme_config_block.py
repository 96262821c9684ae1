"""The README's "Configuration" block is `describe()`'s output: every field, in order, as it is."""

from __future__ import annotations

from pathlib import Path

from rnnclf.config.explain import describe

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_block_is_describe() -> None:
    text = README.read_text(encoding="utf-8")
    assert "<<<<<<<" not in text and ">>>>>>>" not in text  # no merge left half-done
    start = text.index("```yaml\ndata:") + len("```yaml\n")
    end = text.index("```", start)
    assert text[start:end].strip() == describe().strip(), (
        "the README's Configuration block differs from describe(); paste its output there")
