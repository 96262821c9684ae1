"""Run the service: load the checkpoint, bind the socket, hand both to uvicorn."""

from __future__ import annotations

import copy
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from rnnclf.errors import RnnclfError
from rnnclf.inference.serving.model import LoadOptions, load_served_model

log = logging.getLogger("rnnclf.serve")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 256  # texts per model call
    max_wait_ms: float = 5.0  # longest a request waits for others to join its batch
    max_texts: int = 1000  # texts per request
    max_body_bytes: int = 1 << 20
    reload_interval_s: float = 1.0  # how often the checkpoint file is checked; 0 = never
    graceful_timeout_s: float = 30.0  # SIGTERM: how long in-flight requests may take to finish
    access_log: bool = False


def serve(checkpoint: Path, settings: ServeSettings, options: LoadOptions) -> None:
    """Load `checkpoint` and serve it until SIGINT/SIGTERM (then finish in-flight requests)."""
    try:
        import fastapi  # noqa: F401  (imported here only to give the one-line hint)
        import uvicorn
    except ImportError:
        raise RnnclfError("rnnclf serve needs the serve extra: "
                          "pip install 'rnnclf[serve]'") from None
    from rnnclf.accel.onednn import use_public_linear
    from rnnclf.inference.serving.app import Service, create_app
    from rnnclf.inference.serving.batcher import MicroBatcher
    from rnnclf.inference.serving.reloader import CheckpointWatcher, ModelHolder
    from rnnclf.inference.serving.requests import Limits

    use_public_linear()  # memory stays flat whatever batch shapes the clients make
    holder = ModelHolder(load_served_model(checkpoint, options))
    batcher = MicroBatcher(holder.get, settings.max_batch, settings.max_wait_ms)
    watcher = (CheckpointWatcher(holder, options, settings.reload_interval_s)
               if settings.reload_interval_s > 0 else None)
    service = Service(holder, batcher, watcher, Limits(settings.max_texts,
                                                       settings.max_body_bytes))
    listener = bind(settings.host, settings.port)
    config = uvicorn.Config(create_app(service), log_config=_log_config(uvicorn),
                            access_log=settings.access_log,
                            timeout_graceful_shutdown=int(settings.graceful_timeout_s))
    host, port = listener.getsockname()[:2]
    log.info("serving %s (sha256 %s) on http://%s:%d", checkpoint, holder.current.sha256,
             _url_host(host), port)
    uvicorn.Server(config).run(sockets=[listener])


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or one line saying why it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except (OSError, OverflowError) as error:
        listener.close()
        reason = getattr(error, "strerror", None) or str(error)
        raise RnnclfError(f"cannot listen on {host}:{port} ({reason}); pick another --port or "
                          "--host") from None
    listener.set_inheritable(True)
    return listener


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _log_config(uvicorn: object) -> dict:
    """uvicorn's own logging setup, with rnnclf's serve messages in the same stream."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)  # type: ignore[attr-defined]
    config["loggers"]["rnnclf.serve"] = {"handlers": ["default"], "level": "INFO",
                                         "propagate": False}
    return config
