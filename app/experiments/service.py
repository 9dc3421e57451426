"""Create, read and cancel RL experiments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.adapters.labels import Labels
from app.agents.service import get_agent
from app.core.config import REPO_ROOT
from app.core.errors import Conflict, InvalidRequest, NotFound
from app.core.jobs import enqueue
from app.experiments.repository import ExperimentRepository
from app.experiments.schemas import (
    ExperimentConfig,
    ExperimentCreate,
    ExperimentOut,
    ExperimentStepOut,
)
from app.models import Experiment
from app.models.enums import ACTIVE_RUN_STATUSES, RunStatus
from app.training import client as trainer_client

LISTED_EXPERIMENTS = 100
"""The most experiments the API lists, newest first."""


def create_experiment(
    session: Session, tenant_id: uuid.UUID, agent_name: str, config: ExperimentConfig
) -> Experiment:
    agent = get_agent(session, tenant_id, agent_name)
    try:
        trainer_client.get_environment(config.environment)
    except (KeyError, ValueError) as exc:
        raise InvalidRequest(
            f"unknown environment {config.environment!r}", param="environment"
        ) from exc
    experiment = Experiment(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        agent_id=agent.id,
        environment=config.environment,
        status=RunStatus.queued,
        config=config.model_dump(),
    )
    return ExperimentRepository(session).add(experiment)


def start_experiment(
    session: Session, tenant_id: uuid.UUID, body: ExperimentCreate
) -> ExperimentOut:
    """Create an experiment from the API's body and run it on a worker after commit."""
    config = ExperimentConfig.model_validate(body.model_dump(exclude={"agent"}))
    experiment = create_experiment(session, tenant_id, body.agent, config)
    enqueue(session, "experiment.run", str(tenant_id), str(experiment.id))
    return to_out(session, experiment)


def get_experiment(session: Session, tenant_id: uuid.UUID, experiment_id: uuid.UUID) -> Experiment:
    """The tenant's experiment with this id, else NotFound."""
    return ExperimentRepository(session).get_or_404(
        tenant_id, experiment_id, what="experiment", param="experiment_id"
    )


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


def list_experiments(session: Session, tenant_id: uuid.UUID) -> list[ExperimentOut]:
    """The tenant's newest experiments, at most ``LISTED_EXPERIMENTS`` of them."""
    experiments = ExperimentRepository(session).list(tenant_id, limit=LISTED_EXPERIMENTS)
    return outs(session, tenant_id, experiments)


def to_out(session: Session, experiment: Experiment) -> ExperimentOut:
    """The API view of one experiment, with its steps."""
    return outs(session, experiment.tenant_id, [experiment])[0]


def outs(
    session: Session, tenant_id: uuid.UUID, experiments: Sequence[Experiment]
) -> list[ExperimentOut]:
    """The API view of the tenant's experiments: agents, steps and step versions are one
    query each, however many experiments."""
    if not experiments:
        return []
    rows = ExperimentRepository(session).steps_of(tenant_id, [e.id for e in experiments])
    labels = Labels.load(
        session,
        tenant_id,
        [e.agent_id for e in experiments],
        [row.adapter_version_id for row in rows],
    )
    steps: dict[uuid.UUID, list[ExperimentStepOut]] = {e.id: [] for e in experiments}
    for row in rows:
        version = labels.version(row.adapter_version_id)
        steps[row.experiment_id].append(
            ExperimentStepOut(step=row.step, adapter_version=version, metrics=row.metrics)
        )
    return [
        ExperimentOut(
            id=str(e.id),
            agent=labels.agent(e.agent_id),
            environment=e.environment,
            status=e.status,
            config=e.config,
            created_at=e.created_at,
            started_at=e.started_at,
            finished_at=e.finished_at,
            error=e.error,
            steps=steps[e.id],
        )
        for e in experiments
    ]


BENCHMARK_RESULTS = REPO_ROOT / "bench" / "results"


def benchmark_result(name: str) -> Path:
    """A file of the latest `clora bench experiments` run, else NotFound."""
    path = BENCHMARK_RESULTS / name
    if not path.is_file():
        raise NotFound("no benchmark has been run yet (clora bench experiments)")
    return path


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
