"""The trainer service's durable queue in Postgres: enqueue, claim, record steps, finish.

A job is claimed with ``FOR UPDATE SKIP LOCKED``; its claimer renews ``heartbeat_at``. A job
still ``running`` whose heartbeat is older than the stale limit, or whose claimer is this very
trainer restarting, is claimed again: it resumes from its last checkpoint. Step rows are keyed
``(job_id, step)`` and inserted with ``ON CONFLICT DO NOTHING``, so a redone step records once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import TrainingJob, TrainingJobStep
from app.models.enums import RunStatus

WAKE_KEY = "clora:trainer:wake"
"""Redis list the trainer blocks on; pushing a job id wakes it (the row is the truth)."""
ALIVE_KEY = "clora:trainer:alive"
"""Redis key a running trainer keeps fresh (value: its id), so callers can tell it is up."""
RL_INBOX = "clora:trainer:rl:{job}:in"
"""Redis list of an RL job's step requests (JSON), pushed by the experiment loop."""
RL_REPLY = "clora:trainer:rl:{job}:out:{step}"
"""Redis list the trainer pushes a step's result to; the experiment loop blocks on it."""
MAX_ATTEMPTS = 3
"""Claims of one job before it is failed as poison (each crash during it costs one)."""

TERMINAL = (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled)


def enqueue(
    session: Session,
    tenant_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    kind: str,
    payload: dict[str, Any],
    steps_total: int,
) -> TrainingJob:
    """Add a queued job (committed with the caller's unit of work)."""
    job = TrainingJob(
        tenant_id=tenant_id,
        agent_id=agent_id,
        kind=kind,
        payload=payload,
        steps_total=steps_total,
        status=RunStatus.queued,
    )
    session.add(job)
    session.flush()
    return job


def supersede(session: Session, adapter_id: str) -> int:
    """Cancel unfinished jobs training ``adapter_id``: a cycle taken over after its worker died
    starts a new job, and the old one must stop rather than train for nobody. Returns how
    many were cancelled (their trainer notices at its next step)."""
    result = session.execute(
        update(TrainingJob)
        .where(
            TrainingJob.status.in_((RunStatus.queued, RunStatus.running)),
            TrainingJob.payload["adapter_id"].as_string() == adapter_id,
        )
        .values(
            status=RunStatus.cancelled,
            error="superseded by a newer job for the same adapter",
            finished_at=datetime.now(UTC),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def claim(
    session: Session,
    worker_id: str,
    stale_after_s: float,
    exclude: Sequence[uuid.UUID] = (),
) -> TrainingJob | None:
    """The oldest claimable job, now ``running`` and owned by ``worker_id``; or None.

    Claimable: queued; or running with a stale heartbeat; or running under this worker's own
    name but not in ``exclude`` (the jobs it holds), i.e. left over from before a restart."""
    stale = datetime.now(UTC) - timedelta(seconds=stale_after_s)
    job = session.scalars(
        select(TrainingJob)
        .where(
            TrainingJob.id.not_in(exclude) if exclude else true(),
            or_(
                TrainingJob.status == RunStatus.queued,
                (TrainingJob.status == RunStatus.running)
                & or_(TrainingJob.heartbeat_at < stale, TrainingJob.claimed_by == worker_id),
            ),
        )
        .order_by(TrainingJob.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if job is None:
        return None
    now = datetime.now(UTC)
    job.attempts += 1
    job.claimed_by = worker_id
    job.heartbeat_at = now
    job.started_at = job.started_at or now
    if job.attempts > MAX_ATTEMPTS:
        job.status = RunStatus.failed
        job.error = f"gave up after {MAX_ATTEMPTS} attempts (the trainer stopped during each)"
        job.finished_at = now
        return None
    job.status = RunStatus.running
    return job


def heartbeat(session: Session, job_id: uuid.UUID, worker_id: str) -> bool:
    """Renew the claim; False when the job is no longer ours to run (cancelled or taken)."""
    result = session.execute(
        update(TrainingJob)
        .where(
            TrainingJob.id == job_id,
            TrainingJob.claimed_by == worker_id,
            TrainingJob.status == RunStatus.running,
        )
        .values(heartbeat_at=datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_step(
    session: Session, job_id: uuid.UUID, step: int, step_id: str, metrics: dict[str, Any]
) -> None:
    """Record an applied step once (a step redone after a crash adds nothing)."""
    tenant = select(TrainingJob.tenant_id).where(TrainingJob.id == job_id).scalar_subquery()
    session.execute(
        insert(TrainingJobStep)
        .values(job_id=job_id, tenant_id=tenant, step=step, step_id=step_id, metrics=metrics)
        .on_conflict_do_nothing(index_elements=["job_id", "step"])
    )
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.steps_done < step)
        .values(steps_done=step, heartbeat_at=datetime.now(UTC))
    )


def finish(
    session: Session,
    job_id: uuid.UUID,
    status: RunStatus,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Close a job (no effect on one already closed, e.g. cancelled meanwhile)."""
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status.not_in(TERMINAL))
        .values(
            status=status,
            result=result or {},
            error=error[:4000] if error else None,
            finished_at=datetime.now(UTC),
        )
    )


def steps_after(session: Session, job_id: uuid.UUID, after: int) -> Sequence[TrainingJobStep]:
    """The job's recorded steps numbered above ``after``, in order."""
    return session.scalars(
        select(TrainingJobStep)
        .where(TrainingJobStep.job_id == job_id, TrainingJobStep.step > after)
        .order_by(TrainingJobStep.step)
    ).all()
