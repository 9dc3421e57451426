"""A queued cycle whose task was lost is sent again, so its agent is never blocked for good."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import redis as redis_lib

from app.core.db import unit_of_work
from app.cycles import service
from app.models import CycleRun
from app.models.enums import RunStatus
from tests.helpers import factories
from tests.helpers.database import TEST_REDIS_URL


def _queued_run(session: Any, owner: Any, agent: str, **extra: Any) -> CycleRun:
    """A manual cycle run, queued, for a new agent of ``owner``."""
    run = CycleRun(
        tenant_id=owner.id,
        agent_id=factories.agent(session, owner, agent).id,
        trigger="manual",
        status=RunStatus.queued,
        **extra,
    )
    session.add(run)
    return run


def test_a_queued_cycle_whose_task_was_lost_is_sent_again_once_per_period(
    database_url: str,
) -> None:
    queue = f"lost-{uuid.uuid4().hex[:8]}"
    broker = redis_lib.Redis.from_url(TEST_REDIS_URL)
    long_ago = datetime.now(UTC) - timedelta(minutes=20)
    with unit_of_work() as session:
        owner = factories.tenant(session)
        lost = _queued_run(session, owner, "lost", created_at=long_ago)
        fresh = _queued_run(session, owner, "new")
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


def test_a_slow_cycle_keeps_beating_and_is_never_run_twice(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle whose work (evaluation, publishing) takes four stale periods: beat's reaper
    runs all the while and a duplicate delivery arrives, yet the cycle runs once."""
    from app.core.config import get_settings
    from app.cycles import runner

    monkeypatch.setenv("CLORA_CYCLE_STALE_AFTER_S", "1")
    get_settings.cache_clear()
    executed: list[uuid.UUID] = []

    def slow_execute(plan: SimpleNamespace, settings: object) -> RunStatus:
        executed.append(plan.run_id)
        time.sleep(4.0)
        return RunStatus.succeeded

    monkeypatch.setattr(
        runner,
        "plan_cycle",
        lambda session, run, settings: SimpleNamespace(run_id=run.id, job=None),
    )
    monkeypatch.setattr(runner, "_execute", slow_execute)
    monkeypatch.setattr(runner, "deadline_s", lambda plan, settings: 3600.0)
    queue = f"slow-{uuid.uuid4().hex[:8]}"
    with unit_of_work() as session:
        owner = factories.tenant(session)
        run = _queued_run(session, owner, "slow")
        session.flush()
        tenant_id, run_id = owner.id, run.id
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(runner.run_cycle, tenant_id, run_id)
            reaped = 0
            while not first.done():
                time.sleep(0.5)
                with unit_of_work() as session:
                    reaped += service.reap(session, stale_after_s=1, queue=queue)
                if len(executed) == 1:
                    assert runner.run_cycle(tenant_id, run_id) == RunStatus.running
            assert first.result() == RunStatus.succeeded
    finally:
        get_settings.cache_clear()
        redis_lib.Redis.from_url(TEST_REDIS_URL).delete(queue)
    assert executed == [run_id] and reaped == 0


def test_the_reaper_skips_a_cycle_being_cancelled_and_never_undoes_the_cancel(
    database_url: str,
) -> None:
    """A cancel holds the stale run's row while the reaper ticks: the reaper neither waits
    for it nor writes "queued" over the cancel afterwards, and sends no task."""
    queue = f"cancel-{uuid.uuid4().hex[:8]}"
    broker = redis_lib.Redis.from_url(TEST_REDIS_URL)
    long_ago = datetime.now(UTC) - timedelta(minutes=20)
    with unit_of_work() as session:
        owner = factories.tenant(session)
        run = _queued_run(session, owner, "cancelled", heartbeat_at=long_ago)
        run.status = RunStatus.running
        session.flush()
        run_id = run.id
    pool = ThreadPoolExecutor(1)
    try:
        with unit_of_work() as cancel:
            row = cancel.get(CycleRun, run_id, with_for_update=True)
            assert row is not None
            row.status = RunStatus.cancelled
            cancel.flush()
            # The reaper ticks while the cancel holds the row (a reaper that waited for the
            # lock times out here; leaving the block then releases it).
            assert pool.submit(_reap_once, queue).result(timeout=20) == 0
    finally:
        pool.shutdown(wait=True)
    assert _reap_once(queue) == 0  # the next tick sees the cancel
    with unit_of_work() as session:
        row = session.get(CycleRun, run_id)
        assert row is not None and row.status == RunStatus.cancelled
        assert "resumed" not in (row.metrics or {})
    assert broker.llen(queue) == 0
    broker.delete(queue)


def _reap_once(queue: str) -> int:
    with unit_of_work() as session:
        return service.reap(session, stale_after_s=1, queue=queue)
