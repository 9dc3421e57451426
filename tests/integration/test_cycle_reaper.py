"""A queued cycle whose task was lost is sent again, so its agent is never blocked for good."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import redis as redis_lib

from app.core.db import unit_of_work
from app.cycles import service
from app.models import CycleRun
from app.models.enums import RunStatus
from tests.helpers import factories
from tests.helpers.database import TEST_REDIS_URL


def test_a_queued_cycle_whose_task_was_lost_is_sent_again_once_per_period(
    database_url: str,
) -> None:
    queue = f"lost-{uuid.uuid4().hex[:8]}"
    broker = redis_lib.Redis.from_url(TEST_REDIS_URL)
    long_ago = datetime.now(UTC) - timedelta(minutes=20)
    with unit_of_work() as session:
        owner = factories.tenant(session)
        lost = CycleRun(
            tenant_id=owner.id,
            agent_id=factories.agent(session, owner, "lost").id,
            trigger="manual",
            status=RunStatus.queued,
            created_at=long_ago,
        )
        fresh = CycleRun(
            tenant_id=owner.id,
            agent_id=factories.agent(session, owner, "new").id,
            trigger="manual",
            status=RunStatus.queued,
        )
        session.add_all([lost, fresh])
        session.flush()
        lost_id, fresh_id = lost.id, fresh.id
    with unit_of_work() as session:
        service.reap(session, queue=queue, lost_after_s=600)
    assert broker.llen(queue) == 1  # the lost one, not the one queued a moment ago
    with unit_of_work() as session:
        service.reap(session, queue=queue, lost_after_s=600)  # the next tick: just sent
        assert broker.llen(queue) == 1
        row = session.get(CycleRun, lost_id)
        assert row is not None and row.metrics["resent"] == 1
        assert row.status == RunStatus.queued
        assert "resent" not in (session.get(CycleRun, fresh_id).metrics or {})  # type: ignore[union-attr]
    broker.delete(queue)
