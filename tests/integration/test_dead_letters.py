"""The operator sees what the interaction log set aside: a record the database refused is
listed with its reason through the API (the tenant's own only, admins only) and the CLI, and
counted by the metric, while the records around it land."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from app.cli import main
from app.core.db import unit_of_work
from app.core.public_ids import completion_id
from app.interactions.buffer import DEAD_LETTER, STREAM
from app.models import Interaction, User
from app.models.enums import Role
from app.users import tokens
from tests.helpers.browser import Browser, user
from tests.helpers.gateway import Gateway, make_tenant


def _record(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "agent_id": agent_id,
        "request": {"messages": [{"role": "user", "content": "hi"}]},
        "output": {"content": "hello"},
        "stream": False,
        "created_at": now,
        "completed_at": now,
    }


def test_refused_records_are_listed_with_their_reason(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    fx, other = make_tenant(), make_tenant()
    buffer = gateway.app.state.gateway.buffer
    good = _record(fx.tenant.id, fx.agent.id)
    orphan = _record(fx.tenant.id, uuid.uuid4())  # its agent is gone: a foreign key refuses it
    elsewhere = _record(other.tenant.id, uuid.uuid4())
    for record in (orphan, good, elsewhere):
        buffer.append(record)
    buffer.redis.xadd(STREAM, {"r": b"{not a record"})
    gateway.drain()
    with unit_of_work() as session:
        assert session.get(Interaction, good["id"]) is not None  # the rows around it landed
    email = user(fx, Role.admin)
    admin = Browser(gateway, email)
    listed = admin.get("/api/interactions/dead-letters")
    assert listed.status_code == 200, listed.text
    rows = listed.json()
    print(rows)  # shown on failure
    assert [r["interaction_id"] for r in rows] == [completion_id(orphan["id"])]
    assert "foreign key" in rows[0]["error"] and str(fx.tenant.id) in rows[0]["record"]
    operator = Browser(gateway, user(fx, Role.operator))
    assert operator.get("/api/interactions/dead-letters").status_code == 403
    other_admin = Browser(gateway, user(other, Role.admin))
    theirs = other_admin.get("/api/interactions/dead-letters").json()
    assert [r["interaction_id"] for r in theirs] == [completion_id(elsewhere["id"])]

    shown = CliRunner().invoke(main, ["interactions", "dead-letters", "--tenant", fx.tenant.slug])
    assert shown.exit_code == 0, shown.output
    assert completion_id(orphan["id"]) in shown.output and "foreign key" in shown.output
    assert completion_id(elsewhere["id"]) not in shown.output
    everyone = CliRunner().invoke(main, ["interactions", "dead-letters", "--limit", "1000"])
    assert "not a record" in everyone.output  # an entry that is no record: every tenant's view

    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    line = next(x for x in metrics.splitlines() if x.startswith("clora_interaction_dead_letters"))
    assert float(line.split()[-1]) == buffer.redis.xlen(DEAD_LETTER)

    # From an admin's machine, through the API with a personal access token (no database).
    with unit_of_work() as session:
        token = tokens.mint(session, session.query(User).filter_by(email=email).one(), "t")[1]
    monkeypatch.setenv("CLORA_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    remote = CliRunner().invoke(
        main, ["--url", gateway.url, "--token", token, "interactions", "dead-letters"]
    )
    assert remote.exit_code == 0, remote.output
    assert completion_id(orphan["id"]) in remote.output and "foreign key" in remote.output
    assert completion_id(elsewhere["id"]) not in remote.output
