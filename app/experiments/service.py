"""Create, read and cancel RL experiments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.adapters.repository import AdapterVersionRepository
from app.agents.repository import AgentRepository
from app.agents.service import get_agent
from app.core.errors import Conflict, InvalidRequest, NotFound
from app.experiments.repository import ExperimentRepository
from app.experiments.schemas import ExperimentConfig, ExperimentOut, ExperimentStepOut
from app.models import Experiment
from app.models.enums import ACTIVE_RUN_STATUSES, RunStatus


def create_experiment(
    session: Session, tenant_id: uuid.UUID, agent_name: str, config: ExperimentConfig
) -> Experiment:
    from trainer.envs import get_environment

    agent = get_agent(session, tenant_id, agent_name)
    try:
        get_environment(config.environment)
    except (KeyError, ValueError) as exc:
        raise InvalidRequest(
            f"unknown environment {config.environment!r}", param="environment"
        ) from exc
    experiment = Experiment(
        id=uuid.uuid4(), tenant_id=tenant_id, agent_id=agent.id, environment=config.environment,
        status=RunStatus.queued, config=config.model_dump(),
    )  # fmt: skip
    return ExperimentRepository(session).add(experiment)


def get_experiment(session: Session, tenant_id: uuid.UUID, experiment_id: uuid.UUID) -> Experiment:
    found = ExperimentRepository(session).get(tenant_id, experiment_id)
    if found is None:
        raise NotFound("no such experiment", param="experiment_id")
    return found


def cancel_experiment(
    session: Session, tenant_id: uuid.UUID, experiment_id: uuid.UUID
) -> Experiment:
    """Ask a queued or running experiment to stop at its next step boundary."""
    experiment = get_experiment(session, tenant_id, experiment_id)
    if experiment.status not in ACTIVE_RUN_STATUSES:
        raise Conflict(f"the experiment is already {experiment.status}", param="experiment_id")
    experiment.status = RunStatus.cancelled
    experiment.finished_at = datetime.now(UTC)
    session.flush()
    return experiment


def to_out(session: Session, experiment: Experiment) -> ExperimentOut:
    agent = AgentRepository(session).get(experiment.tenant_id, experiment.agent_id)
    versions = AdapterVersionRepository(session)
    steps = []
    for row in ExperimentRepository(session).steps(experiment.tenant_id, experiment.id):
        version = (
            versions.get(experiment.tenant_id, row.adapter_version_id)
            if row.adapter_version_id
            else None
        )
        steps.append(
            ExperimentStepOut(
                step=row.step,
                adapter_version=version.number if version else None,
                metrics=row.metrics,
            )
        )
    return ExperimentOut(
        id=str(experiment.id), agent=agent.name if agent else "?", environment=experiment.environment,
        status=experiment.status, config=experiment.config, created_at=experiment.created_at,
        started_at=experiment.started_at, finished_at=experiment.finished_at, error=experiment.error,
        steps=steps,
    )  # fmt: skip


ALIVE_TTL_S = 60
"""Seconds an experiment's liveness key lives; its process renews it every 10 s."""


def alive_key(experiment_id: uuid.UUID) -> str:
    return f"clora:experiment:{experiment_id}:alive"


def reap_orphans(session: Session, redis: Any, now: datetime | None = None) -> int:
    """Fail running experiments whose process died: no liveness key for a whole TTL.

    Its recorded steps and published versions stay; the error says what happened. Returns
    how many were failed. (Experiments are not resumed: an RL step is cheap to rerun as a new
    experiment, unlike a learning cycle, which is.)"""
    now = now or datetime.now(UTC)
    reaped = 0
    for experiment in ExperimentRepository(session).running_started_before(
        now - timedelta(seconds=ALIVE_TTL_S)
    ):
        if redis.exists(alive_key(experiment.id)):
            continue
        experiment.status = RunStatus.failed
        experiment.finished_at = now
        experiment.error = "the process running it stopped (no heartbeat); its steps are kept"
        reaped += 1
    return reaped
