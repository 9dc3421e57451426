"""Celery tasks of the learning-cycle domain."""

from __future__ import annotations

import logging
import uuid

from app.core.celery_app import get_celery
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.core.logging import bound
from app.core.redis import get_redis
from app.cycles import service
from app.cycles.runner import CycleGone, run_cycle
from app.experiments.service import reap_orphans
from app.fine_tuning.service import start_waiting

log = logging.getLogger(__name__)


celery_app = get_celery()


@celery_app.task(name="cycle.run", acks_late=True)
def run_task(tenant_id: str, run_id: str) -> str:
    """Run one cycle; guarded by its status, so a re-delivered task does not run it twice."""
    try:
        with bound(cycle_id=run_id):
            return str(run_cycle(uuid.UUID(tenant_id), uuid.UUID(run_id)))
    except CycleGone:
        log.warning("cycle %s is gone", run_id)
        return "gone"


@celery_app.task(name="cycle.after_feedback", acks_late=True)
def after_feedback_task(tenant_id: str, feedback_id: str) -> bool:
    """Start a cycle when compiled feedback completes an every-K schedule's count."""
    with unit_of_work() as session:
        run = service.maybe_trigger_after_feedback(
            session, uuid.UUID(tenant_id), uuid.UUID(feedback_id)
        )
    return run is not None


@celery_app.task(name="cycle.tick")
def tick_task() -> int:
    """Fire cron schedules that are due, start fine-tuning jobs whose agent is free, and reap
    cycles whose worker died."""
    with unit_of_work() as session:
        started = service.tick(session)
        start_waiting(session)  # backstop: a job whose agent's cycle ended without a runner
        service.reap(session, stale_after_s=get_settings().cycle_stale_after_s)
        reap_orphans(session, get_redis())
    return started
