"""`rnnclf pretrain`: train the classifier's encoder as a language model (docs/pretraining.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnnclf.cli.arguments import split_config_args
from rnnclf.errors import RnnclfError


def pretrain(
    args: Annotated[list[str] | None, typer.Argument(
        help="CONFIG.yaml (default: the built-in experiment), then overrides "
             "section.key=value, e.g. pretrain.epochs=2.",
        show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="An override section.key=value (repeatable).")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue the pretraining run in this folder from its last.pt.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace the run already in the run folder.")] = False,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the language model run's config as YAML and exit.")
    ] = False,
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="Pretrain data-parallel in N processes on this machine (runs "
                               "torchrun).")] = 1,
) -> None:
    """Pretrain the embedding and recurrent encoder as a language model on the training split's
    texts (and pretrain.unlabeled_files); writes runs/<name>_lm/ for model.init_from."""
    from rnnclf.config.loading import load_config, to_yaml
    from rnnclf.config.resume import load_resume_config
    from rnnclf.training.distributed import launch, session
    from rnnclf.training.pretrain import fit_language_model, pretrain_config

    config_path, overrides = split_config_args(args or [])
    overrides += set_ or []
    if resume is not None:
        if config_path is not None:
            raise RnnclfError("--resume continues a run with its saved config; drop the config "
                              "file argument")
        config = load_resume_config(resume, overrides)  # already the language model's config
    else:
        config = pretrain_config(load_config(config_path, overrides))
    if print_config:
        typer.echo(to_yaml(config), nl=False)
        return
    if nproc > 1:  # the config is valid: start the same command in nproc processes
        relaunched = ["pretrain", *([str(config_path)] if config_path else [])]
        relaunched += [arg for override in overrides for arg in ("--set", override)]
        relaunched += (["--resume", str(resume)] if resume else []) + (
            ["--overwrite"] if overwrite else [])
        raise typer.Exit(launch(nproc, relaunched))
    with session(config.train.device) as dist:
        fit_language_model(config, overwrite=overwrite, resume_dir=resume, log=typer.echo,
                           dist=dist)
