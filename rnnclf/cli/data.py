"""`rnnclf data download|info`: get AG News ahead of time; describe a dataset."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rnnclf.cli.arguments import ConfigArgs, split_config_args

data_app = typer.Typer(help="Get AG News ahead of time; describe a dataset.",
                       no_args_is_help=True)


@data_app.command("download")
def data_download(
    dir_: Annotated[str, typer.Option(
        "--dir", help="Folder for train.csv/test.csv (default: $RNNCLF_DATA_DIR, else "
        "~/.cache/rnnclf/ag_news).")] = "",
    mirror: Annotated[str | None, typer.Option(
        help="Base URL to download from (default: $RNNCLF_AGNEWS_MIRROR, else the "
        "CharCnn_Keras mirror).")] = None,
) -> None:
    """Download AG News (train.csv, test.csv) and check their MD5s; verifies files already there."""
    from rnnclf.data.info import download_ag_news

    download_ag_news(dir_, mirror, log=typer.echo)


@data_app.command("info")
def data_info(
    args: ConfigArgs = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Row counts, label balance, text lengths in tokens and vocabulary coverage per split."""
    from rnnclf.config.loading import load_config
    from rnnclf.data.info import dataset_info, format_info

    config_path, overrides = split_config_args(args or [])
    info = dataset_info(load_config(config_path, overrides).data)
    typer.echo(json.dumps(info) if json_output else format_info(info))
