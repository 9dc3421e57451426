"""The Celery application: Redis broker and result backend, dotted task names."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import beat_embedded_init, setup_logging, worker_process_init

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


@setup_logging.connect
def _structured_logs(**_: Any) -> None:
    """Celery's own and every task's log lines through clora's structured logs."""
    from app.core.logging import configure

    configure()


@beat_embedded_init.connect
@worker_process_init.connect
def _die_with_the_worker(**_: Any) -> None:
    """The worker's own children (beat, started by ``--beat``, and prefork pool processes)
    stop when the worker's main process dies, even by kill -9: an orphaned beat would go on
    firing the reaper and the sweep beside the restarted worker's own beat."""
    from app.runtime.supervisor import die_with_parent

    die_with_parent()


celery_app = make_celery()
