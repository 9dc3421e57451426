"""Enqueue Celery tasks after commit: queued during the unit of work, sent on commit, dropped on rollback."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.celery_app import get_celery

log = logging.getLogger(__name__)
_KEY = "clora_jobs"


def enqueue(session: Session, task_name: str, *args: Any, **options: Any) -> None:
    """Send ``task_name(*args)`` once the session's transaction commits."""
    session.info.setdefault(_KEY, []).append((task_name, args, options))


@event.listens_for(Session, "after_commit")
def _send_jobs(session: Session) -> None:
    jobs = session.info.pop(_KEY, [])
    if not jobs:
        return
    for name, args, options in jobs:
        try:
            get_celery().send_task(name, args=list(args), **options)
        except Exception:  # noqa: BLE001 - the data is committed; the sweeper re-sends
            log.exception("could not enqueue %s%s; the periodic sweep will pick it up", name, args)


@event.listens_for(Session, "after_rollback")
def _drop_jobs(session: Session) -> None:
    session.info.pop(_KEY, None)
