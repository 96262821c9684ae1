"""What several commands share: the config-and-overrides arguments, the run-folder lookup, and
the --device/--precision/--runs-dir options (one help text each).

Options with a fixed set of values are `Literal`s: the help lists the values and shell completion
completes them. --device stays free text, since cuda:N takes any N, with a completion list.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from rnnclf.errors import RnnclfError

ConfigArgs = Annotated[list[str] | None, typer.Argument(
    help="CONFIG.yaml (default: the built-in experiment), then overrides section.key=value.",
    show_default=False)]
Precision = Literal["fp32", "bf16", "fp16"]
Split = Literal["test", "val"]
ExportFormat = Literal["onnx", "torchscript", "checkpoint"]

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:0")  # what completion offers; any cuda:N is valid


def complete_device(incomplete: str) -> list[str]:
    """Shell completion of --device (without importing torch: completion must be quick)."""
    return [name for name in DEVICE_NAMES if name.startswith(incomplete)]


DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."
DeviceOption = Annotated[str, typer.Option(
    help=DEVICE_HELP, metavar="auto|cpu|cuda|cuda:N", autocompletion=complete_device)]
PrecisionOption = Annotated[Precision, typer.Option(
    help="fp32, or bf16 (faster on CPUs with native bf16; CUDA too) or fp16 (CUDA) autocast.")]


class Quantization(StrEnum):
    """`--quantize` values (rnnclf/inference/quantize.py QUANTIZATIONS)."""

    int8 = "int8"


QuantizeOption = Annotated[Quantization | None, typer.Option(
    help="int8: int8 weights, about 4x smaller in memory (CPU, fp32 only; docs/benchmarks.md). "
    "An int8 checkpoint is int8 without it.", show_default=False)]


def quantization_name(quantize: Quantization | None) -> str | None:
    """The library's name for a --quantize value (None: as the checkpoint holds)."""
    return quantize.value if quantize is not None else None


RunsDirOption = Annotated[Path | None, typer.Option(
    help="Where to look for the newest run ($RNNCLF_RUNS_DIR, else ./runs).")]


def split_config_args(args: list[str]) -> tuple[Path | None, list[str]]:
    """Positional arguments: at most one config file, then any number of section.key=value."""
    config_path: Path | None = None
    overrides: list[str] = []
    for arg in args:
        if "=" in arg and not Path(arg).exists():
            overrides.append(arg)
        elif config_path is None and not overrides:
            config_path = Path(arg)
        else:
            raise RnnclfError(f"unexpected argument {arg!r}; give one config file, then "
                              "overrides as section.key=value")
    return config_path, overrides


def checkpoint_or_newest(checkpoint: Path | None, runs_dir: Path | None, quiet: bool) -> Path:
    """`checkpoint`, else the newest run's best.pt (named on stderr unless `quiet`)."""
    if checkpoint is not None:
        return checkpoint
    from rnnclf.config.schema import default_runs_dir
    from rnnclf.runs.checkpoint import newest_run_checkpoint

    newest = newest_run_checkpoint(runs_dir if runs_dir is not None else default_runs_dir())
    if not quiet:
        typer.echo(f"checkpoint: {newest}", err=True)
    return newest
