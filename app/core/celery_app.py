"""The Celery application: Redis broker and result backend, dotted task names. Made once per
process, when first asked for (tasks modules at import, `app.core.jobs` at the first commit
that sends a task); the worker process is `app.runtime.worker`."""

from __future__ import annotations

from functools import cache

from celery import Celery

from app.core.config import get_settings


def make_celery() -> Celery:
    settings = get_settings()
    url = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("clora", broker=url, backend=url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="clora",
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        # A task whose worker died (kill -9) is delivered again after this long.
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
        beat_schedule={
            "feedback-sweep": {"task": "feedback.sweep", "schedule": 30.0},
            "cycles-tick": {"task": "cycle.tick", "schedule": 15.0},
        },
        imports=(
            "app.feedback.tasks",
            "app.cycles.tasks",
            "app.adapters.tasks",
            "app.experiments.tasks",
        ),
    )
    return app


@cache
def get_celery() -> Celery:
    """This process's Celery application."""
    return make_celery()
