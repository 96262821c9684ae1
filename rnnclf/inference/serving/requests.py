"""Request bodies of POST /v1/predict: read within a size limit, then checked, each problem
becoming one HTTP 4xx line (`BadRequest`) instead of an exception reaching the client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect, Request

BODY_SHAPE = 'send {"texts": ["some text", ...], "top_k": 1}'


class BadRequest(Exception):
    """A client's mistake: `status` (4xx) and one line saying what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_texts: int = 1000  # texts in one request
    max_body_bytes: int = 1 << 20  # request body size


class PredictRequest(BaseModel):
    """The body of POST /v1/predict."""

    model_config = ConfigDict(extra="forbid", strict=True)

    texts: list[str] = Field(description="Texts to classify (non-empty strings).",
                             examples=[["Oil prices climb as OPEC cuts output"]])
    top_k: int = Field(1, description="How many labels to return per text, most probable "
                                      "first (1 to the number of labels).")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as its declared or streamed size passes `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(400, f"Content-Length {declared[:40]!r} is not a number of bytes")
        if int(declared) > limit:
            raise BadRequest(413, f"body of {int(declared)} bytes is over the limit of {limit} "
                                  "bytes; send fewer or shorter texts per request")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"body is over the limit of {limit} bytes; send fewer or "
                                      "shorter texts per request")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest(400, "the client closed the connection before sending the whole "
                              "body") from None
    return b"".join(chunks)


def parse_predict(body: bytes, label_count: int, limits: Limits) -> PredictRequest:
    """A checked PredictRequest, or BadRequest naming the first problem."""
    payload = _json_of(body)
    if not isinstance(payload, dict):
        raise BadRequest(422, f"the body must be a JSON object, not {_json_kind(payload)}; "
                              f"{BODY_SHAPE}")
    try:
        request = PredictRequest.model_validate(payload)
    except ValidationError as error:
        raise BadRequest(422, validation_message(error.errors())) from None
    _check_texts(request.texts, limits)
    if not 1 <= request.top_k <= label_count:
        raise BadRequest(422, f"top_k must be between 1 and {label_count} (the number of "
                              f"labels), got {request.top_k}")
    return request


def _json_of(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest(400, f"the body is empty; {BODY_SHAPE}")
    try:
        text = body.decode("utf-8-sig")  # a leading byte-order mark is harmless: allow it
    except UnicodeDecodeError as error:
        raise BadRequest(400, f"the body is not valid UTF-8 (byte {error.start}); send JSON "
                              "encoded as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRequest(400, f"the body is not valid JSON ({error.msg} at line {error.lineno} "
                              f"column {error.colno}); {BODY_SHAPE}") from None
    except RecursionError:
        raise BadRequest(400, f"the body's JSON is nested too deeply; {BODY_SHAPE}") from None
    except ValueError as error:  # e.g. an integer with more digits than Python converts
        raise BadRequest(400, f"the body's JSON has a value Python cannot read "
                              f"({str(error)[:80]}); {BODY_SHAPE}") from None


def _check_texts(texts: list[str], limits: Limits) -> None:
    if not texts:
        raise BadRequest(422, f"texts is empty; {BODY_SHAPE}")
    if len(texts) > limits.max_texts:
        raise BadRequest(422, f"too many texts: {len(texts)}, the limit is {limits.max_texts} "
                              "per request; split them over several requests")
    for index, text in enumerate(texts):
        if not text or text.isspace():
            raise BadRequest(422, f"texts[{index}] is empty; give some words to classify")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # "\ud800" escapes decode to lone surrogates
            raise BadRequest(422, f"texts[{index}] holds a lone surrogate (an unpaired \\ud800-"
                                  "\\udfff escape), which is not text; send valid Unicode"
                             ) from None


def validation_message(errors: list[Any]) -> str:
    """Pydantic's first error as one line a client can act on (and how many more there are)."""
    first = errors[0]
    location = _location(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "missing":
        message = f"missing field '{location}'; {BODY_SHAPE}"
    elif kind == "extra_forbidden":
        message = f"unknown field '{location}'; {BODY_SHAPE}"
    else:
        given = _json_kind(first.get("input"))
        message = f"{location}: {first.get('msg', 'invalid value')} (got {given}); {BODY_SHAPE}"
    more = len(errors) - 1
    return message + (f" ({more} more problem{'s' if more > 1 else ''})" if more else "")


def _location(parts: tuple[Any, ...]) -> str:
    text = ""
    for part in parts:
        if part == "body":  # FastAPI's prefix for body fields says nothing to the client
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
