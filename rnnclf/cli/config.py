"""`rnnclf config show|validate|list`: the resolved config as YAML, a check of config files, and
the shipped configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnnclf.cli.arguments import ConfigArgs, split_config_args

config_app = typer.Typer(help="Show, check and list YAML configs.", no_args_is_help=True)


@config_app.command("show")
def config_show(
    args: ConfigArgs = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add each field's meaning (and choices) as a comment.")] = False,
) -> None:
    """Print the resolved config as YAML, every default filled in."""
    from rnnclf.config.explain import show

    config_path, overrides = split_config_args(args or [])
    typer.echo(show(config_path, overrides, explain), nl=False)


@config_app.command("validate")
def config_validate(
    paths: Annotated[list[Path], typer.Argument(
        help="YAML config files to check.", show_default=False)],
) -> None:
    """Check config files; exit non-zero with the first problem."""
    from rnnclf.config.explain import validate

    validate(paths, log=typer.echo)


@config_app.command("list")
def config_list() -> None:
    """The shipped configs, by name (`rnnclf train NAME`), with what each one is."""
    from rnnclf.config.shipped import description, shipped_configs

    shipped = shipped_configs()
    width = max(map(len, shipped), default=0)
    for name, path in shipped.items():
        typer.echo(f"{name:<{width}}  {description(path)}")
