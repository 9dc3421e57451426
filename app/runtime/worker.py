"""The Celery worker's process: `celery -A app.runtime.worker worker` (and beat). The
application itself is `app.core.celery_app`; this module adds what the worker process does
at start (structured logs, dying with its parent)."""

from __future__ import annotations

from typing import Any

from celery.signals import beat_embedded_init, setup_logging, worker_process_init

from app.core.celery_app import get_celery


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


celery_app = get_celery()
