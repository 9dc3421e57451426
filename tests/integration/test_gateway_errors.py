"""Every error the gateway gives has its status and the OpenAI envelope; none is a 500."""

from __future__ import annotations

import httpx
import openai
import pytest

from app.core.db import unit_of_work
from app.tenants.service import create_api_key, revoke_api_key
from tests.helpers.gateway import Gateway, make_tenant

pytestmark = pytest.mark.slow


def post(gateway: Gateway, key: str | None, body: object, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes | str):
        return httpx.post(
            f"{gateway.api_base}/chat/completions",
            content=body,
            headers={**headers, "content-type": "application/json"},
            timeout=60,
        )
    return httpx.post(
        f"{gateway.api_base}/chat/completions", json=body, headers=headers, timeout=60
    )


def envelope(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


def ok_body(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def test_authentication_errors(gateway: Gateway) -> None:
    fx = make_tenant()
    assert envelope(post(gateway, None, ok_body("bot")), 401)["type"] == "authentication_error"
    envelope(post(gateway, "nonsense", ok_body("bot")), 401)
    envelope(post(gateway, fx.key[:-4] + "AAAA", ok_body("bot")), 401)
    with unit_of_work() as session:
        key, plaintext = create_api_key(session, fx.tenant.id, "to revoke")
    assert post(gateway, plaintext, ok_body("bot")).status_code == 200
    with unit_of_work() as session:
        revoke_api_key(session, fx.tenant.id, key.id)
    gateway.app.state.gateway._principals.clear()
    import time

    time.sleep(5.1)  # the verified-key cache lives 5 s
    envelope(post(gateway, plaintext, ok_body("bot")), 401)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.api_base, api_key="clora_bad", max_retries=0).models.list()


@pytest.mark.parametrize("model", ["nobody", "bot@v1", "bot@v0", "../bot", "t-x/bot@v1", "", "BOT"])
def test_unknown_models_are_404(gateway: Gateway, model: str) -> None:
    fx = make_tenant()
    status = 400 if model == "" else 404
    error = envelope(post(gateway, fx.key, ok_body(model)), status)
    assert error["param"] == "model"


def test_other_tenants_agent_is_404(gateway: Gateway) -> None:
    a, b = make_tenant("mine"), make_tenant("theirs")
    assert envelope(post(gateway, a.key, ok_body("theirs")), 404)["code"] == "model_not_found"
    assert post(gateway, b.key, ok_body("theirs")).status_code == 200


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"top_logprobs": 50}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"response_format": {"type": "xml"}}, "response_format"),
    ],
)
def test_invalid_requests_are_400_with_param(gateway: Gateway, change: dict, param: str) -> None:
    fx = make_tenant()
    body = {**ok_body(fx.agent.name), **change}
    error = envelope(post(gateway, fx.key, body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_malformed_json_is_400(gateway: Gateway) -> None:
    fx = make_tenant()
    envelope(post(gateway, fx.key, b'{"model": "bot", "messages": [}'), 400)


def test_prompt_longer_than_context_is_400(gateway: Gateway) -> None:
    fx = make_tenant()
    body = {**ok_body(fx.agent.name), "messages": [{"role": "user", "content": "7 " * 3000}]}
    envelope(post(gateway, fx.key, body), 400)


def test_oversized_body_is_413(gateway: Gateway) -> None:
    fx = make_tenant()
    huge = {**ok_body(fx.agent.name), "messages": [{"role": "user", "content": "x" * 1_200_000}]}
    assert envelope(post(gateway, fx.key, huge), 413)["code"] == "request_too_large"


def test_rate_and_concurrency_limits_are_429(gateway: Gateway) -> None:
    fx = make_tenant()
    limits = gateway.app.state.gateway.limits
    per_minute, concurrency = limits.per_minute, limits.max_concurrency
    try:
        limits.per_minute = 2
        statuses = [post(gateway, fx.key, ok_body(fx.agent.name)).status_code for _ in range(4)]
        assert statuses[:2] == [200, 200]
        assert statuses[2:] == [429, 429]
        limits.per_minute = per_minute
        limits.max_concurrency = 0
        assert (
            envelope(post(gateway, fx.key, ok_body(fx.agent.name)), 429)["type"]
            == "rate_limit_error"
        )
    finally:
        limits.per_minute, limits.max_concurrency = per_minute, concurrency
    other = make_tenant()
    assert post(gateway, other.key, ok_body(other.agent.name)).status_code == 200


def test_every_served_request_counts_once_against_the_rate(gateway: Gateway) -> None:
    """Chat, text completions and responses count against the tenant's rate, each once,
    whether its key was new to the gateway (counted after authentication) or known (counted in
    the round trip that reads the serving generation); listing models does not count."""
    fx = make_tenant()
    state = gateway.app.state.gateway
    limits = state.limits
    per_minute = limits.per_minute
    headers = {"Authorization": f"Bearer {fx.key}"}
    served = [
        ("/v1/chat/completions", ok_body(fx.agent.name)),
        ("/v1/completions", {"model": fx.agent.name, "prompt": "7 times 8 is", "max_tokens": 2}),
        ("/v1/responses", {"model": fx.agent.name, "input": "Hi", "max_output_tokens": 2}),
    ]
    try:
        limits.per_minute = 3
        statuses = [
            httpx.post(f"{gateway.url}{path}", json=body, headers=headers, timeout=60).status_code
            for path, body in served
        ]
        assert statuses == [200, 200, 200]
        assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == 200
        assert int(limits.redis.get(limits.rate_key(fx.tenant.id))) == 3
        refused = httpx.post(
            f"{gateway.url}/v1/responses", json=served[2][1], headers=headers, timeout=60
        )
        assert envelope(refused, 429)["type"] == "rate_limit_error"
        assert int(limits.redis.get(limits.rate_key(fx.tenant.id))) == 4
    finally:
        limits.per_minute = per_minute


def test_engine_down_is_503(gateway: Gateway) -> None:
    fx = make_tenant()
    replica = gateway.app.state.gateway.pool.replicas[0]
    url, loaded = replica.url, set(replica.loaded)
    try:
        replica.url = "http://127.0.0.1:9"
        replica.loaded = set()
        error = envelope(post(gateway, fx.key, ok_body(fx.agent.name)), 503)
        assert error["code"] == "engine_unavailable"
    finally:
        replica.url, replica.loaded = url, loaded
    assert post(gateway, fx.key, ok_body(fx.agent.name)).status_code == 200


def test_cors_is_closed_by_default(gateway: Gateway) -> None:
    """No origin is allowed unless CLORA_CORS_ORIGINS lists it: a preflight from another
    site gets no Access-Control-Allow-Origin, so a browser refuses the cross-origin call."""
    preflight = httpx.options(
        f"{gateway.url}/api/auth/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    plain = httpx.get(f"{gateway.url}/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_cors_allows_only_listed_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from app.core.config import get_settings
    from app.main import create_app

    monkeypatch.setenv("CLORA_CORS_ORIGINS", '["https://ui.example"]')
    get_settings.cache_clear()
    try:
        client = TestClient(create_app())  # no lifespan: the middleware answers preflights
    finally:
        monkeypatch.delenv("CLORA_CORS_ORIGINS")
        get_settings.cache_clear()
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-csrf-token",
    }
    allowed = client.options("/api/keys", headers={"Origin": "https://ui.example", **ask})
    assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    refused = client.options("/api/keys", headers={"Origin": "https://evil.example", **ask})
    assert "access-control-allow-origin" not in refused.headers


def test_secrets_never_reach_the_logs(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    """Keys (good, revoked, wrong), passwords and the settings' secrets appear in no log line,
    whatever the request did, with every logger at DEBUG."""
    import logging
    import uuid

    from app.core.config import get_settings
    from app.models.enums import Role
    from app.users.service import create_user

    fx = make_tenant()
    password = f"pw-{uuid.uuid4().hex}"
    email = f"log-{uuid.uuid4().hex[:8]}@example.test"
    with unit_of_work() as session:
        create_user(session, email, password, Role.admin, fx.tenant.id)
    wrong_key = fx.key[:-4] + "zzzz"
    # Everything a DEBUG deployment writes, the HTTP clients' per-request lines included.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        assert post(gateway, fx.key, ok_body(fx.agent.name)).status_code == 200
        assert post(gateway, wrong_key, ok_body(fx.agent.name)).status_code == 401
        assert post(gateway, fx.key, {"model": fx.agent.name}).status_code == 400
        httpx.post(f"{gateway.url}/api/auth/login", json={"email": email, "password": password})
        httpx.post(
            f"{gateway.url}/api/auth/login", json={"email": email, "password": password + "x"}
        )
    text = caplog.text + repr(get_settings())
    secret_part = fx.key.rsplit("_", 1)[1]
    assert len(caplog.records) > 0
    for secret in (fx.key, secret_part, wrong_key, password):
        assert secret not in text
    secret_key = get_settings().secret_key
    if secret_key is not None:
        assert secret_key.get_secret_value() not in text


def test_every_response_carries_a_request_id(gateway: Gateway) -> None:
    """The id every log line of the request carries comes back as x-request-id: the caller's
    own when well-formed, a fresh one otherwise (so a user can quote it in a report)."""
    fx = make_tenant()
    fresh = post(gateway, "wrong-key", ok_body(fx.agent.name))
    assert fresh.status_code == 401 and len(fresh.headers["x-request-id"]) == 32
    given = httpx.post(
        f"{gateway.api_base}/chat/completions",
        json=ok_body(fx.agent.name),
        headers={"Authorization": f"Bearer {fx.key}", "x-request-id": "support-123"},
        timeout=60,
    )
    assert given.status_code == 200 and given.headers["x-request-id"] == "support-123"
    spoofed = httpx.post(
        f"{gateway.api_base}/chat/completions",
        json=ok_body(fx.agent.name),
        headers={"Authorization": f"Bearer {fx.key}", "x-request-id": "bad id\twith spaces"},
        timeout=60,
    )
    assert spoofed.headers["x-request-id"] != "bad id\twith spaces"
