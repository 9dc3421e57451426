"""Celery tasks of the experiment domain."""

from __future__ import annotations

import asyncio
import uuid

from app.core.celery_app import get_celery
from app.core.config import get_settings
from app.core.logging import bound
from app.experiments.runner import run_experiments

celery_app = get_celery()


@celery_app.task(name="experiment.run", acks_late=True)
def run_task(tenant_id: str, experiment_id: str) -> str:
    """Run one experiment (its status guard makes a re-delivery do nothing)."""
    with bound(experiment_id=experiment_id):
        [status] = asyncio.run(
            run_experiments(get_settings(), [(uuid.UUID(tenant_id), uuid.UUID(experiment_id))])
        )
    return str(status)
