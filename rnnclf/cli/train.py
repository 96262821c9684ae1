"""`rnnclf train`: load the config (or a run's, with --resume); fit one model or an ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rnnclf.cli.arguments import DEVICE_HELP, complete_device, split_config_args
from rnnclf.errors import RnnclfError

if TYPE_CHECKING:
    from rnnclf.config.schema import Config


def train(
    args: Annotated[list[str] | None, typer.Argument(
        help="CONFIG.yaml (default: the built-in experiment), then overrides "
             "section.key=value, e.g. model.cell=lstm train.epochs=3.",
        show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="An override section.key=value (repeatable).")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue the run in this folder from its last.pt.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace the run already in the run folder.")] = False,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved config as YAML and exit without training.")
    ] = False,
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="Train data-parallel in N processes on this machine (runs "
                               "torchrun; see docs/distributed.md).")] = 1,
    device: Annotated[str | None, typer.Option(
        help=f"Train on this device (sets train.device): {DEVICE_HELP}",
        metavar="auto|cpu|cuda|cuda:N", autocompletion=complete_device,
        show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of initialisation, shuffling and dropout (sets train.seed; a resumed run "
             "keeps its own).", show_default=False)] = None,
) -> None:
    """Train a classifier; writes runs/<name>/ (config.yaml, metrics.jsonl, best.pt, last.pt)."""
    from rnnclf.config.loading import load_config, to_yaml
    from rnnclf.training.distributed import launch
    from rnnclf.training.ensemble import load_run_config

    config_path, overrides = split_config_args(args or [])
    overrides += set_ or []
    # Last, so they win over the same key given as an override; --resume checks them too.
    overrides += [f"train.device={device}"] if device is not None else []
    overrides += [f"train.seed={seed}"] if seed is not None else []
    if resume is not None:
        if config_path is not None:
            raise RnnclfError("--resume continues a run with its saved config; drop the config "
                              "file argument")
        config = load_run_config(resume, overrides)
    else:
        config = load_config(config_path, overrides)
    if print_config:
        typer.echo(to_yaml(config), nl=False)
        return
    if config.train.ensemble > 1 and nproc > 1:
        raise RnnclfError("train.ensemble trains its members one after another in one process; "
                          "drop --nproc, or set train.ensemble=1")
    if nproc > 1:  # the config is valid: start the same command in nproc processes
        raise typer.Exit(launch(nproc, _relaunched(config_path, overrides, resume, overwrite)))
    _fit(config, overwrite, resume, overrides)


def _relaunched(config_path: Path | None, overrides: list[str], resume: Path | None,
                overwrite: bool) -> list[str]:
    """The `rnnclf train` arguments each of the --nproc processes runs (overrides as --set)."""
    relaunched = ["train", *([str(config_path)] if config_path else [])]
    relaunched += [arg for override in overrides for arg in ("--set", override)]
    return relaunched + (["--resume", str(resume)] if resume else []) + (
        ["--overwrite"] if overwrite else [])


def _fit(config: Config, overwrite: bool, resume: Path | None, overrides: list[str]) -> None:
    """One model (in this process, or as one rank under torchrun), or an ensemble."""
    from rnnclf.training.distributed import session
    from rnnclf.training.ensemble import fit_ensemble
    from rnnclf.training.trainer import fit

    ensemble = config.train.ensemble > 1
    with session(config.train.device) as dist:
        if ensemble and dist.enabled:
            raise RnnclfError("train.ensemble cannot run under torchrun; train it in one "
                              "process, or set train.ensemble=1")
        if ensemble:
            fit_ensemble(config, overwrite=overwrite, resume_dir=resume, overrides=overrides,
                         log=typer.echo)
        else:
            fit(config, overwrite=overwrite, resume_dir=resume, log=typer.echo, dist=dist)
