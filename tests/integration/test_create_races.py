"""Races are conflicts: twenty concurrent creates of the same thing, on every create endpoint,
give one success and, where the thing has a unique name, 409s naming the field; never a 500.

The services check a name before they insert it; under a race the database's unique key
decides, and `app.core.http_errors.integrity_error` is the one mapping from its refusal to a
409 in the API envelope."""

from __future__ import annotations

import io
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.core.db import unit_of_work
from app.core.http_errors import integrity_error
from app.models import Agent, Feedback, Tenant, User
from app.models.enums import Role
from tests.helpers.browser import PASSWORD, Browser, user
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant

pytestmark = pytest.mark.slow
N = 20


def race(send: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """N copies of one request, released together."""
    start = threading.Barrier(N)

    def one() -> httpx.Response:
        start.wait()
        return send()

    with ThreadPoolExecutor(N) as pool:
        return list(pool.map(lambda _: one(), range(N)))


def statuses(answers: list[httpx.Response]) -> Counter[int]:
    counted = Counter(a.status_code for a in answers)
    print(dict(counted), [a.text for a in answers if a.status_code >= 500][:2])  # on failure
    return counted


def one_created_the_rest_conflict(answers: list[httpx.Response], field: str) -> None:
    assert statuses(answers) == Counter({201: 1, 409: N - 1})
    for refused in (a for a in answers if a.status_code == 409):
        error = refused.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "conflict"
        assert error["param"] == field, error
        assert "exists" in error["message"], error


def count(model: type, *where: object) -> int:
    with unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def admin(gateway: Gateway) -> tuple[TenantFixture, Browser]:
    fx = make_tenant()
    return fx, Browser(gateway, user(fx, Role.admin))


def test_one_tenant_slug(gateway: Gateway) -> None:
    platform = Browser(gateway, user(None, Role.platform_admin))
    slug = f"race-{uuid.uuid4().hex[:8]}"
    answers = race(lambda: platform.post("/api/tenants", json={"slug": slug}))
    one_created_the_rest_conflict(answers, "slug")
    assert count(Tenant, Tenant.slug == slug) == 1


def test_one_user_email(admin: tuple[TenantFixture, Browser]) -> None:
    _, browser = admin
    email = f"race-{uuid.uuid4().hex[:8]}@example.test"
    body = {"email": email, "password": PASSWORD}
    one_created_the_rest_conflict(race(lambda: browser.post("/api/users", json=body)), "email")
    assert count(User, User.email == email) == 1


def test_one_agent_name(admin: tuple[TenantFixture, Browser]) -> None:
    fx, browser = admin
    answers = race(lambda: browser.post("/api/agents", json={"name": "racer", "lora_rank": 8}))
    one_created_the_rest_conflict(answers, "name")
    assert count(Agent, Agent.tenant_id == fx.tenant.id, Agent.name == "racer") == 1


def test_creates_without_a_unique_name_all_succeed(
    gateway: Gateway, admin: tuple[TenantFixture, Browser], monkeypatch: pytest.MonkeyPatch
) -> None:
    """API keys and personal access tokens may share a name; every upload is a file of its
    own; a cycle already queued is the answer to the next trigger. (The cycle's task is held,
    not sent: a worker of the suite would run it, end it and let a later trigger start
    another, as it did in a fresh-clone run.)"""
    monkeypatch.setattr("app.cycles.service.enqueue", lambda *_a, **_k: None)
    fx, browser = admin
    keys = race(lambda: browser.post("/api/keys", json={"name": "same"}))
    assert statuses(keys) == Counter({201: N})
    assert len({k.json()["id"] for k in keys}) == N
    tokens = race(lambda: browser.post("/api/auth/tokens", json={"name": "same"}))
    assert statuses(tokens) == Counter({201: N})
    client = fx.client(gateway)
    line = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    files = race(
        lambda: httpx.post(
            f"{gateway.url}/v1/files",
            headers={"Authorization": f"Bearer {fx.key}"},
            data={"purpose": "fine-tune"},
            files={"file": ("same.jsonl", io.BytesIO(line))},
            timeout=60,
        )
    )
    assert statuses(files) == Counter({200: N})
    assert len(client.files.list().data) == N
    cycles = race(lambda: browser.post(f"/api/agents/{fx.agent.name}/cycles"))
    assert statuses(cycles) == Counter({202: N})
    assert len({c.json()["id"] for c in cycles}) == 1  # one run, every trigger shown it


def test_one_feedback_per_idempotency_key(gateway: Gateway) -> None:
    fx = make_tenant()
    reply = fx.client(gateway).chat.completions.create(
        model=fx.agent.name, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    gateway.drain()
    body = {
        "interaction_id": reply.id,
        "kind": "correction",
        "correction": {"content": "hello"},
        "idempotency_key": "race-1",
    }
    answers = race(
        lambda: httpx.post(
            f"{gateway.api_base}/feedback",
            json=body,
            headers={"Authorization": f"Bearer {fx.key}"},
            timeout=60,
        )
    )
    assert statuses(answers) == Counter({201: 1, 200: N - 1})  # the retries see the first
    assert len({a.json()["id"] for a in answers}) == 1
    assert count(Feedback, Feedback.idempotency_key == "race-1") == 1


def test_the_mapping_names_the_field_of_any_unique_key(gateway: Gateway) -> None:
    """Straight from the database, without a service's own check in front."""
    fx = make_tenant()
    with pytest.raises(IntegrityError) as raised, unit_of_work() as session:
        session.add(Agent(tenant_id=fx.tenant.id, name=fx.agent.name))
        session.flush()
    error = integrity_error(raised.value)
    assert (error.status, error.param) == (409, "name")
    assert error.message == "another agent with this name already exists"
    with pytest.raises(IntegrityError) as raised, unit_of_work() as session:
        session.add(Agent(tenant_id=uuid.uuid4(), name="orphan"))
        session.flush()
    gone = integrity_error(raised.value)
    assert (gone.status, gone.param) == (409, "tenant_id")
    with pytest.raises(IntegrityError) as raised, unit_of_work() as session:
        session.add(Agent(tenant_id=fx.tenant.id, name="Not A Slug"))
        session.flush()
    assert integrity_error(raised.value).status == 400
