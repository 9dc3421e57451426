"""An experiment whose process died is failed by the beat's reaper, not left running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis as redis_lib
from sqlalchemy.orm import Session

from app.experiments.service import ALIVE_TTL_S, alive_key, reap_orphans
from app.models import Experiment
from app.models.enums import RunStatus
from tests.helpers import factories
from tests.helpers.database import TEST_REDIS_URL


def _experiment(db: Session, started_ago_s: float) -> Experiment:
    owner = factories.tenant(db)
    agent = factories.agent(db, owner)
    row = Experiment(
        tenant_id=owner.id,
        agent_id=agent.id,
        environment="calculator",
        config={},
        status=RunStatus.running,
        started_at=datetime.now(UTC) - timedelta(seconds=started_ago_s),
    )
    db.add(row)
    db.flush()
    return row


def test_only_silent_experiments_are_reaped(db: Session) -> None:
    redis = redis_lib.Redis.from_url(TEST_REDIS_URL)
    orphan = _experiment(db, 10 * ALIVE_TTL_S)
    alive = _experiment(db, 10 * ALIVE_TTL_S)
    young = _experiment(db, 1)  # just started: its first heartbeat may not be there yet
    redis.set(alive_key(alive.id), "1", ex=ALIVE_TTL_S)
    try:
        assert reap_orphans(db, redis) >= 1
    finally:
        redis.delete(alive_key(alive.id))
    assert orphan.status == RunStatus.failed and "stopped" in (orphan.error or "")
    assert orphan.finished_at is not None
    assert alive.status == RunStatus.running and young.status == RunStatus.running
