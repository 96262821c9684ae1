"""The `rnnclf` command line: one module per command, registered in cli/app.py."""

from rnnclf.cli.app import main

__all__ = ["main"]
