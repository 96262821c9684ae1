"""The FastAPI app: routes, error handlers (every client mistake one 4xx line of JSON), and a
lifespan that starts and stops the batcher and the checkpoint watcher."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from rnnclf import __version__
from rnnclf.inference.predictor import Prediction
from rnnclf.inference.serving.batcher import MicroBatcher, ServiceStopping
from rnnclf.inference.serving.reloader import CheckpointWatcher, ModelHolder
from rnnclf.inference.serving.requests import (
    BadRequest,
    Limits,
    PredictRequest,
    parse_predict,
    read_body,
    validation_message,
)

log = logging.getLogger("rnnclf.serve")
ECHO_CHARS = 200  # as `rnnclf predict --json`: the echoed text is cut to this many characters


@dataclass
class Service:
    """What the routes share: the model in service, the batcher, the watcher and the limits."""

    holder: ModelHolder
    batcher: MicroBatcher
    watcher: CheckpointWatcher | None
    limits: Limits
    ready: bool = False


class LabelProbability(BaseModel):
    label: str
    probability: float


class PredictionOut(BaseModel):
    """One text's result, in the shape of `rnnclf predict --json`."""

    text: str
    label: str
    probability: float
    top_k: list[LabelProbability]
    truncated: bool


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]
    checkpoint_sha256: str


def prediction_record(result: Prediction) -> dict[str, Any]:
    """The JSON object `rnnclf predict --json` prints for one text."""
    text = result.text if len(result.text) <= ECHO_CHARS else result.text[:ECHO_CHARS] + "..."
    return {"text": text, "label": result.labels[0], "probability": result.probabilities[0],
            "top_k": [{"label": label, "probability": probability}
                      for label, probability in zip(result.labels, result.probabilities)],
            "truncated": result.truncated}


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        if service.watcher is not None:
            service.watcher.start()
        service.ready = True
        try:
            yield
        finally:  # uvicorn has let in-flight requests finish; drain what is still queued
            service.ready = False
            if service.watcher is not None:
                service.watcher.stop()
            service.batcher.stop()

    app = FastAPI(title="rnnclf", version=__version__, lifespan=lifespan,
                  description="Recurrent text classifier: POST texts to /v1/predict.")
    _add_routes(app, service)
    _add_error_handlers(app)
    return app


def _add_routes(app: FastAPI, service: Service) -> None:
    page = resources.files("rnnclf.inference.serving").joinpath("static/index.html").read_text(
        encoding="utf-8")
    body_schema = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": PredictRequest.model_json_schema()}}}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.post("/v1/predict", openapi_extra=body_schema,
              responses={200: {"model": PredictResponse}})
    async def predict(request: Request) -> JSONResponse:
        """Labels and probabilities per text, and the digest of the checkpoint that gave them."""
        body = await read_body(request, service.limits.max_body_bytes)
        parsed = parse_predict(body, len(service.holder.current.labels), service.limits)
        answer = await service.batcher.predict(parsed.texts, parsed.top_k)
        return JSONResponse({"predictions": [prediction_record(p) for p in answer.predictions],
                             "checkpoint_sha256": answer.sha256})

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        """Labels, config summary, checkpoint digest and rnnclf version of the model in use."""
        info = service.holder.current.describe()
        info["stats"] = {"model_calls": service.batcher.model_calls,
                         "texts": service.batcher.texts_served,
                         "reloads": service.watcher.reloads if service.watcher else 0}
        return info

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """A model is loaded and the batcher takes requests."""
        if not service.ready:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse({"status": "ready",
                             "checkpoint_sha256": service.holder.current.sha256})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, error: BadRequest) -> JSONResponse:
        return _error(error.status, error.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, validation_message(list(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path[:200]}"
        if error.status_code == 404:
            message = f"no such route: {where}; the API is described at /docs"
        elif error.status_code == 405:
            headers = {key.lower(): value for key, value in (error.headers or {}).items()}
            allowed = headers.get("allow")
            message = f"method not allowed: {where}; use {allowed or 'another method'}"
        else:
            message = str(error.detail)
        return _error(error.status_code, message, error.headers)

    @app.exception_handler(ServiceStopping)
    async def stopping(_: Request, error: ServiceStopping) -> JSONResponse:
        return _error(503, str(error))

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        # A bug or a model fault, never a client's mistake: the details stay in the server log.
        log.error("internal error on %s %s: %r", request.method, request.url.path, error,
                  exc_info=error)
        return _error(500, "internal server error; the server log has the details")
