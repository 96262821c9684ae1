"""POST /v1/predict and the other routes, in process (FastAPI's TestClient): the answer's shape
matches `rnnclf predict --json`, and every malformed request is one 4xx line of JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from robustness_support import run_cli
from serve_support import app_of, make_service

from rnnclf.inference.serving.requests import Limits

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
TEXTS = ["Oil prices climb as OPEC cuts output", "The home team won the final in overtime"]


@pytest.fixture
def client(served_checkpoint: Path) -> Iterator[TestClient]:
    service = make_service(served_checkpoint, limits=Limits(max_texts=50, max_body_bytes=8192))
    with TestClient(app_of(service), raise_server_exceptions=False) as test_client:
        yield test_client


def test_predict_answers_in_the_shape_of_predict_json(client: TestClient,
                                                      served_checkpoint: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    response = client.post("/v1/predict", json={"texts": TEXTS, "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["checkpoint_sha256"] == hashlib.sha256(served_checkpoint.read_bytes()).hexdigest()
    cli = run_cli(["predict", "-c", served_checkpoint, "--device", "cpu", "--json", "-k", "3",
                   *TEXTS], capsys)
    assert cli.code == 0, cli.stderr
    expected = [json.loads(line) for line in cli.stdout.splitlines()]
    assert len(body["predictions"]) == len(expected) == 2
    for served, printed in zip(body["predictions"], expected):
        assert served.keys() == printed.keys()
        assert served["text"] == printed["text"] and served["label"] == printed["label"]
        assert served["truncated"] == printed["truncated"]
        assert [item["label"] for item in served["top_k"]] == \
            [item["label"] for item in printed["top_k"]]
        for mine, theirs in zip(served["top_k"], printed["top_k"]):
            assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-6)
        assert len(served["top_k"]) == 3


def test_top_k_defaults_to_one(client: TestClient) -> None:
    body = client.post("/v1/predict", json={"texts": ["stocks fell"]}).json()
    (prediction,) = body["predictions"]
    assert prediction["label"] in LABELS
    assert [item["label"] for item in prediction["top_k"]] == [prediction["label"]]


def test_model_health_ready_docs_and_page(client: TestClient, served_checkpoint: Path) -> None:
    info = client.get("/v1/model").json()
    assert info["labels"] == LABELS
    assert info["checkpoint_sha256"] == hashlib.sha256(served_checkpoint.read_bytes()).hexdigest()
    assert info["config"]["model"]["cell"] == "gru"
    assert info["config"]["max_length"] == 32
    from rnnclf import __version__

    assert info["rnnclf_version"] == __version__
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/predict" in schema["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text


LONG = "word " * 4000  # 20 kB: over the test's 8 kB body limit
MALFORMED: list[tuple[str, bytes | str, dict[str, str], int, str]] = [
    ("empty body", b"", {}, 400, "body is empty"),
    ("invalid JSON", b'{"texts": [', {}, 400, "not valid JSON"),
    ("trailing garbage", b'{"texts": ["a"]} x', {}, 400, "not valid JSON"),
    ("invalid UTF-8", b'{"texts": ["caf\xe9"]}', {}, 400, "not valid UTF-8"),
    ("deep nesting", b"[" * 3000, {}, 400, "nested too deeply"),
    ("huge integer", b'{"texts": ["a"], "top_k": ' + b"9" * 4400 + b"}", {}, 400,
     "cannot read"),
    ("not an object", b'["a", "b"]', {}, 422, "must be a JSON object"),
    ("null", b"null", {}, 422, "must be a JSON object"),
    ("missing texts", b'{"top_k": 1}', {}, 422, "missing field 'texts'"),
    ("misspelt field", b'{"text": ["a"]}', {}, 422, "'texts'"),
    ("unknown field", b'{"texts": ["a"], "topk": 2}', {}, 422, "unknown field 'topk'"),
    ("texts a string", b'{"texts": "a"}', {}, 422, "texts: Input should be a valid list"),
    ("text a number", b'{"texts": ["a", 5]}', {}, 422, "texts[1]"),
    ("text null", b'{"texts": [null]}', {}, 422, "texts[0]"),
    ("no texts", b'{"texts": []}', {}, 422, "texts is empty"),
    ("empty text", b'{"texts": ["fine", ""]}', {}, 422, "texts[1] is empty"),
    ("blank text", b'{"texts": [" \\t\\n "]}', {}, 422, "texts[0] is empty"),
    ("lone surrogate", b'{"texts": ["\\ud800 x"]}', {}, 422, "lone surrogate"),
    ("too many texts", json.dumps({"texts": ["a"] * 51}), {}, 422, "too many texts: 51"),
    ("top_k zero", b'{"texts": ["a"], "top_k": 0}', {}, 422, "top_k must be between 1 and 4"),
    ("top_k too big", b'{"texts": ["a"], "top_k": 5}', {}, 422, "got 5"),
    ("top_k negative", b'{"texts": ["a"], "top_k": -1}', {}, 422, "top_k must be"),
    ("top_k float", b'{"texts": ["a"], "top_k": 2.0}', {}, 422, "top_k"),
    ("top_k string", b'{"texts": ["a"], "top_k": "2"}', {}, 422, "top_k"),
    ("top_k boolean", b'{"texts": ["a"], "top_k": true}', {}, 422, "top_k"),
    ("body over the limit", json.dumps({"texts": [LONG]}), {}, 413, "over the limit"),
    ("declared length over the limit", b"{}", {"content-length": "999999"}, 413,
     "over the limit"),
]


@pytest.mark.parametrize("name,body,headers,status,needle", MALFORMED,
                         ids=[case[0] for case in MALFORMED])
def test_malformed_request_is_one_4xx_line(client: TestClient, name: str, body: bytes | str,
                                           headers: dict[str, str], status: int,
                                           needle: str) -> None:
    response = client.post("/v1/predict", content=body,
                           headers={"content-type": "application/json", **headers})
    assert_one_error_line(response, status, needle)
    # the service is unharmed: a good request right after still works
    assert client.post("/v1/predict", json={"texts": ["fine"]}).status_code == 200


def test_body_streamed_without_length_is_limited_too(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"texts": ["'
        for _ in range(200):
            yield b"x" * 100
        yield b'"]}'

    response = client.post("/v1/predict", content=chunks())
    assert "content-length" not in response.request.headers
    assert_one_error_line(response, 413, "over the limit")


@pytest.mark.parametrize("method,path,status,needle", [
    ("GET", "/v1/nothing", 404, "no such route: GET /v1/nothing"),
    ("GET", "/v1/predict", 405, "method not allowed: GET /v1/predict; use POST"),
    ("DELETE", "/v1/model", 405, "method not allowed"),
    ("PUT", "/", 405, "method not allowed"),
])
def test_unknown_route_or_method_is_one_4xx_line(client: TestClient, method: str, path: str,
                                                 status: int, needle: str) -> None:
    assert_one_error_line(client.request(method, path), status, needle)


def test_an_internal_fault_is_a_clean_500(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    from rnnclf.inference.predictor import Predictor

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug inside the model")

    monkeypatch.setattr(Predictor, "predict", broken)
    response = client.post("/v1/predict", json={"texts": ["x"]})
    assert_one_error_line(response, 500, "internal server error")
    assert "a bug inside the model" not in response.text  # the detail stays in the log
    assert "a bug inside the model" in caplog.text


def assert_one_error_line(response, status: int, needle: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert list(body) == ["error"], body
    message = body["error"]
    assert isinstance(message, str) and "\n" not in message and "Traceback" not in message
    assert needle in message, message
