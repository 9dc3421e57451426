"""The body guard: NUL characters are refused before any handler; text that only looks like
one (an escaped backslash before "u0000") passes; chunk boundaries do not hide one."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from app.core.middleware import BodyGuard


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.add_middleware(BodyGuard, max_bytes=1000)
    return TestClient(app)


@pytest.mark.parametrize(
    "body", [b'{"content": "a\\u0000b"}', b'{"content": "a\x00b"}', b'{"c": "\\\\\\u0000"}']
)
def test_a_nul_is_a_400_with_the_error_envelope(client: TestClient, body: bytes) -> None:
    resp = client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_characters"


def test_text_that_only_looks_like_a_nul_passes(client: TestClient) -> None:
    body = b'{"content": "a\\\\u0000b"}'  # JSON for the six characters \u0000
    resp = client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200 and resp.json() == {"bytes": len(body)}


def test_a_nul_split_across_chunks_is_found(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"content": "abc\\u00'
        yield b'00"}'

    resp = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 400


def test_a_large_body_is_still_a_413(client: TestClient) -> None:
    resp = client.post("/echo", content=b"x" * 2000)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"


def test_file_uploads_have_their_own_larger_limit() -> None:
    app = FastAPI()

    @app.post("/{path:path}")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.add_middleware(BodyGuard, max_bytes=1000, larger={"/v1/files": 5000})
    client = TestClient(app)
    assert client.post("/v1/files", content=b"x" * 4000).json() == {"bytes": 4000}
    assert client.post("/v1/files", content=b"x" * 6000).status_code == 413
    refused = client.post("/v1/chat/completions", content=b"x" * 4000)
    assert refused.status_code == 413 and "1000 bytes" in refused.json()["error"]["message"]


def test_clora_max_file_bytes_sets_the_upload_limit_of_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The setting reaches the app's guard: an upload over it is refused before any handler,
    one under it gets past the guard (to routing: no such operation), and other paths keep
    the 1 MB."""
    from app.core.config import get_settings
    from app.main import create_app

    monkeypatch.setenv("CLORA_MAX_FILE_BYTES", "2000000")
    get_settings.cache_clear()
    try:
        client = TestClient(create_app())
        big = client.post("/v1/files", content=b"x" * 2_100_000)
        assert big.status_code == 413 and "2065536 bytes" in big.json()["error"]["message"]
        past = client.post("/v1/files/file-0/nothing", content=b"x" * 1_500_000)
        assert past.status_code in (404, 405)
        chat = client.post("/v1/chat/completions", content=b"x" * 1_500_000)
        assert chat.status_code == 413
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages": [{"role": "user", "content": "hi \\ud800 there"}]}',
        b'{"content": "\\udc00"}',
        b'{"\\ud83d": 1}',  # a lone high surrogate in a key
        b'{"c": ["ok", "\\ud83d\\u0041"]}',  # high surrogate followed by a non-surrogate
    ],
)
def test_a_lone_surrogate_is_a_400_with_the_error_envelope(client: TestClient, body: bytes) -> None:
    resp = client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_characters"
    assert "surrogate" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"content": "\\ud83d\\ude00 a pair"}',  # an escaped emoji: a valid pair
        '{"content": "😀 raw"}'.encode(),
        b'{"content": "\\\\ud800"}',  # the six characters \ud800, as text
        b"not json \\ud800",  # not JSON: left to the handler
    ],
)
def test_paired_or_literal_surrogate_text_passes(client: TestClient, body: bytes) -> None:
    resp = client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
