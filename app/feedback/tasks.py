"""Celery tasks of the feedback domain."""

from __future__ import annotations

import logging
import uuid

from app.core.celery_app import get_celery
from app.core.db import unit_of_work
from app.core.jobs import enqueue
from app.core.logging import bound
from app.feedback.compile import FeedbackGone, compile_feedback
from app.feedback.repository import FeedbackRepository

log = logging.getLogger(__name__)


celery_app = get_celery()


@celery_app.task(
    name="feedback.compile",
    acks_late=True,
    autoretry_for=(OSError,),
    max_retries=5,
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
)
def compile_task(tenant_id: str, feedback_id: str) -> int:
    """Compile one feedback item into training examples (idempotent by unique keys)."""
    try:
        with bound(feedback_id=feedback_id), unit_of_work() as session:
            written = compile_feedback(session, uuid.UUID(tenant_id), uuid.UUID(feedback_id))
            # An every-K schedule counts compiled feedback: the cycles domain decides, once
            # this commit has made the examples visible (`cycles.tasks.after_feedback_task`).
            enqueue(session, "cycle.after_feedback", tenant_id, feedback_id)
    except FeedbackGone:
        log.warning("feedback %s is gone; nothing to compile", feedback_id)
        return 0
    return written


@celery_app.task(name="feedback.sweep")
def sweep_task() -> int:
    """Re-send compile tasks for feedback whose task was lost (broker down at commit)."""
    with unit_of_work() as session:
        pending = FeedbackRepository(session).uncompiled_ids()
        for tenant_id, feedback_id in pending:
            enqueue(session, "feedback.compile", str(tenant_id), str(feedback_id))
    return len(pending)
