"""Admin and operator API: sessions with CSRF, roles, tenant scoping, keys, datasets."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from app.models.enums import Role
from tests.helpers.browser import Browser, user
from tests.helpers.gateway import Gateway, make_tenant

pytestmark = pytest.mark.slow


def test_sign_in_cookies_and_csrf(gateway: Gateway) -> None:
    fx = make_tenant()
    email = user(fx, Role.admin)
    assert Browser(gateway, email, "wrong password!").login.status_code == 401
    assert Browser(gateway, "nobody@example.test").login.status_code == 401
    b = Browser(gateway, email)
    assert b.login.status_code == 200 and b.login.json() == {
        "email": email,
        "role": "admin",
        "tenant": fx.tenant.slug,
    }
    session_cookie = next(
        c for c in b.login.headers.get_list("set-cookie") if c.startswith("clora_session=")
    )
    assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie
    assert b.get("/api/auth/me").json()["email"] == email
    no_csrf = b.http.post("/api/keys", json={"name": "k"})
    assert no_csrf.status_code == 403 and no_csrf.json()["error"]["param"] == "x-csrf-token"
    created = b.post("/api/keys", json={"name": "k"})
    assert created.status_code == 201 and created.json()["key"].startswith("clora_")
    listed = b.get("/api/keys").json()
    assert all(k["key"] is None for k in listed)
    key_id = created.json()["id"]
    assert b.post(f"/api/keys/{key_id}/revoke").status_code == 204
    assert b.post(f"/api/keys/{key_id}/revoke").status_code == 404
    b.post("/api/auth/logout")
    assert b.get("/api/auth/me").status_code == 401
    tampered = httpx.get(f"{gateway.url}/api/auth/me", cookies={"clora_session": "x.1.2.3"})
    assert tampered.status_code == 401


def test_roles_and_tenant_scope(gateway: Gateway) -> None:
    a, b = make_tenant("agent-a"), make_tenant("agent-b")
    reply = a.client(gateway).chat.completions.create(
        model=a.agent.name, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    b.client(gateway).chat.completions.create(
        model=b.agent.name, messages=[{"role": "user", "content": "yo"}], max_tokens=3
    )
    gateway.drain()
    operator_a = Browser(gateway, user(a, Role.operator))
    items = operator_a.get("/api/interactions").json()["items"]
    assert [i["id"] for i in items] == [reply.id]
    assert operator_a.get(f"/api/interactions/{reply.id}").status_code == 200
    operator_b = Browser(gateway, user(b, Role.operator))
    assert operator_b.get(f"/api/interactions/{reply.id}").status_code == 404
    assert (
        operator_b.post(
            "/api/feedback",
            json={"interaction_id": reply.id, "kind": "rating", "rating": {"thumbs": "up"}},
        ).status_code
        == 404
    )
    assert operator_a.post("/api/keys", json={"name": "k"}).status_code == 403
    assert operator_a.post(f"/api/agents/{a.agent.name}/cycles").status_code == 403
    assert operator_a.get("/api/tenants").status_code == 403
    given = operator_a.post(
        "/api/feedback",
        json={"interaction_id": reply.id, "kind": "rating", "rating": {"thumbs": "up"}},
    )
    assert given.status_code == 201
    assert operator_a.get("/api/interactions?unrated=true").json()["total"] == 0
    admin_b = Browser(gateway, user(b, Role.admin))
    assert admin_b.get(f"/api/agents/{a.agent.name}/versions").status_code == 404
    assert admin_b.get(f"/api/agents/{b.agent.name}/versions").json() == []
    assert (
        admin_b.post(f"/api/agents/{a.agent.name}/promote", json={"version": 1}).status_code == 404
    )
    platform = Browser(gateway, user(None, Role.platform_admin))
    slugs = {t["slug"] for t in platform.get("/api/tenants").json()}
    assert {a.tenant.slug, b.tenant.slug} <= slugs
    assert platform.get("/api/interactions").status_code == 404  # must name a tenant
    assert platform.get(f"/api/interactions?tenant={a.tenant.slug}").json()["total"] == 1


def test_schedule_validation_and_dataset_round_trip(gateway: Gateway) -> None:
    fx = make_tenant()
    admin = Browser(gateway, user(fx, Role.admin))
    bad = admin.put(
        f"/api/agents/{fx.agent.name}/schedule", json={"mode": "cron", "cron": "every day"}
    )
    assert bad.status_code == 400
    ok = admin.put(
        f"/api/agents/{fx.agent.name}/schedule", json={"mode": "every_k", "every_k": 5, "steps": 10}
    )
    assert ok.status_code == 200 and ok.json()["every_k"] == 5
    assert ok.json()["copy_guard"] == 0.1  # the default, unless chosen
    too_strong = admin.put(f"/api/agents/{fx.agent.name}/schedule", json={"copy_guard": 11})
    assert too_strong.status_code == 400
    assert too_strong.json()["error"]["param"] == "copy_guard"
    off = admin.put(f"/api/agents/{fx.agent.name}/schedule", json={"copy_guard": 0})
    assert admin.get(f"/api/agents/{fx.agent.name}/schedule").json()["copy_guard"] == 0
    assert off.status_code == 200
    good = [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
        {
            "input": {"messages": [{"role": "user", "content": "3+3?"}]},
            "preferred_output": [{"role": "assistant", "content": "6"}],
            "non_preferred_output": [{"role": "assistant", "content": "7"}],
        },
    ]
    broken = "\n".join([json.dumps(good[0]), '{"messages": [{"role": "user", "content": "x"}]}'])
    refused = admin.post(f"/api/agents/{fx.agent.name}/dataset?split=eval", content=broken)
    assert refused.status_code == 400 and "line 2" in refused.json()["error"]["message"]
    assert admin.get(f"/api/agents/{fx.agent.name}/dataset").text == ""
    imported = admin.post(
        f"/api/agents/{fx.agent.name}/dataset?split=eval",
        content="\n".join(json.dumps(g) for g in good),
    )
    assert imported.json() == {"imported": 2}
    exported = [
        json.loads(line)
        for line in admin.get(f"/api/agents/{fx.agent.name}/dataset?split=eval").text.splitlines()
    ]
    assert exported == good


def test_an_agent_rank_the_engine_cannot_serve_is_refused(gateway: Gateway) -> None:
    """The API refuses a LoRA rank above the engine's limit, naming it, instead of creating an
    agent whose every cycle would fail."""
    fx = make_tenant()
    admin = Browser(gateway, user(fx, Role.admin))
    refused = admin.post("/api/agents", json={"name": "too-wide", "lora_rank": 32})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "lora_rank" and "up to 16" in error["message"]
    served = admin.post("/api/agents", json={"name": "fits", "lora_rank": 16})
    assert served.status_code in (200, 201), served.text


def test_a_name_with_a_trailing_newline_is_a_400_not_a_500(gateway: Gateway) -> None:
    """Names are matched whole: "bot\\n" once passed `re.match` with `$` and then hit the
    database CHECK as a 500."""
    fx = make_tenant()
    admin = Browser(gateway, user(fx, Role.admin))
    for name in ("bot\n", "bot\r\n", "bot\x00", "../bot", "b" * 100):
        refused = admin.post("/api/agents", json={"name": name})
        assert refused.status_code == 400, (name, refused.text)
        error = refused.json()["error"]
        # A NUL never reaches the handler: the body guard refuses it (PostgreSQL cannot store it).
        assert error["param"] == "name" or (
            name == "bot\x00" and error["code"] == "invalid_characters"
        )
    platform = Browser(gateway, user(None, Role.platform_admin))
    tenant = platform.post("/api/tenants", json={"slug": "acme\n"})
    assert tenant.status_code == 400 and tenant.json()["error"]["param"] == "slug", tenant.text


def test_writes_are_rate_limited_per_tenant(gateway: Gateway) -> None:
    """A tenant's /api writes and its /v1/feedback share one budget per minute; reads and
    other tenants go on."""
    from app.core.config import get_settings

    fx, other = make_tenant(), make_tenant()
    admin, neighbour = (
        Browser(gateway, user(fx, Role.admin)),
        Browser(gateway, user(other, Role.admin)),
    )
    settings = get_settings()
    was = settings.tenant_write_limit_per_minute
    if time.time() % 60 > 45:  # one minute's window for the whole test
        time.sleep(61 - time.time() % 60)
    settings.tenant_write_limit_per_minute = 3
    try:
        writes = [admin.post("/api/keys", json={"name": f"k{i}"}).status_code for i in range(3)]
        refused = admin.post("/api/keys", json={"name": "one too many"})
        feedback = httpx.post(
            f"{gateway.api_base}/feedback",
            headers={"Authorization": f"Bearer {fx.key}"},
            json={
                "interaction_id": "chatcmpl-" + uuid.uuid4().hex,
                "kind": "rating",
                "rating": {"thumbs": "up"},
            },
            timeout=30,
        )
        read = admin.get("/api/keys")
        elsewhere = neighbour.post("/api/keys", json={"name": "fine"})
    finally:
        settings.tenant_write_limit_per_minute = was
    assert writes == [201, 201, 201]
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    assert "3 writes per minute" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert feedback.status_code == 429
    assert read.status_code == 200 and len(read.json()) == 4  # the fixture's key and three
    assert elsewhere.status_code == 201


def test_writes_no_tenant_scopes_are_rate_limited_per_user(gateway: Gateway) -> None:
    """Personal access tokens, one's own password and a platform admin's tenants: each user's
    writes have a budget of their own (the same per-minute limit), and another user goes on."""
    from app.core.config import get_settings

    fx = make_tenant()
    operator = Browser(gateway, user(fx, Role.operator))
    platform = Browser(gateway, user(None, Role.platform_admin))
    colleague = Browser(gateway, user(fx, Role.operator))
    settings = get_settings()
    was = settings.tenant_write_limit_per_minute
    if time.time() % 60 > 45:  # one minute's window for the whole test
        time.sleep(61 - time.time() % 60)
    settings.tenant_write_limit_per_minute = 3
    try:
        tokens = [operator.post("/api/auth/tokens", json={"name": f"t{i}"}) for i in range(4)]
        password = operator.post(
            "/api/auth/password", json={"current_password": "x" * 12, "new_password": "y" * 12}
        )
        tenants = [
            platform.post("/api/tenants", json={"slug": f"w-{uuid.uuid4().hex[:8]}"})
            for _ in range(4)
        ]
        other = colleague.post("/api/auth/tokens", json={"name": "mine"})
    finally:
        settings.tenant_write_limit_per_minute = was
    assert [t.status_code for t in tokens] == [201, 201, 201, 429]
    assert "3 writes per minute" in tokens[3].json()["error"]["message"]
    assert password.status_code == 429
    assert [t.status_code for t in tenants] == [201, 201, 201, 429]
    assert other.status_code == 201


def test_cookie_secure_follows_the_setting(gateway: Gateway) -> None:
    """Secure cookies in production by default; CLORA_COOKIE_SECURE forces either way (a
    plain-HTTP lab sets it false, a TLS front in development true)."""
    from app.core.config import get_settings

    fx = make_tenant()
    email = user(fx, Role.operator)
    settings = get_settings()
    was = settings.cookie_secure

    def cookies() -> list[str]:
        return Browser(gateway, email).login.headers.get_list("set-cookie")

    try:
        settings.cookie_secure = True
        forced = cookies()
        settings.cookie_secure = None  # this gateway runs in development: not Secure
        default = cookies()
    finally:
        settings.cookie_secure = was
    assert len(forced) == 2 and all("Secure" in c for c in forced)
    assert len(default) == 2 and not any("Secure" in c for c in default)
