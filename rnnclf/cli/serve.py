"""`rnnclf serve`: a prediction service over HTTP (FastAPI + uvicorn, the `serve` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnnclf.cli.arguments import (
    DeviceOption,
    PrecisionOption,
    RunsDirOption,
    checkpoint_or_newest,
)


def serve(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="A best.pt (default: the newest run's best.pt). Replaced files are reloaded.",
        show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (localhost only by "
                                           "default; 0.0.0.0 opens it to the network).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")
                    ] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, help="Most texts in one model call.")] = 256,
    max_wait_ms: Annotated[float, typer.Option(
        min=0, help="Longest a request waits for others to join its model call.")] = 5.0,
    max_texts: Annotated[int, typer.Option(min=1, help="Most texts in one request.")] = 1000,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body.")
                              ] = 1 << 20,
    reload_interval: Annotated[float, typer.Option(
        min=0, help="Seconds between checks of the checkpoint file for a new version; 0: "
        "never reload.")] = 1.0,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads for torch; 0: torch's "
                                                     "default.")] = 0,
    quantize: Annotated[str | None, typer.Option(
        help="Serve the model quantized (int8).", show_default=False)] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    runs_dir: RunsDirOption = None,
) -> None:
    """Serve a checkpoint over HTTP: POST /v1/predict, a demo page at /, docs at /docs."""
    from rnnclf.inference.serving.model import LoadOptions
    from rnnclf.inference.serving.server import ServeSettings
    from rnnclf.inference.serving.server import serve as run_server

    if threads:
        import torch

        torch.set_num_threads(threads)
    checkpoint = checkpoint_or_newest(checkpoint, runs_dir, quiet=False)
    settings = ServeSettings(host, port, max_batch, max_wait_ms, max_texts, max_body_bytes,
                             reload_interval, access_log=access_log)
    run_server(checkpoint, settings, LoadOptions(device, precision, quantize))
