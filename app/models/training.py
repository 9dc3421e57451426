"""The trainer service's durable queue: training jobs and the steps each one has applied."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TenantScoped, TimestampMixin, utcnow
from app.models.enums import RunStatus, checked


class TrainingJob(IdMixin, TimestampMixin, TenantScoped, Base):
    """One unit of work for the trainer service (today: train a candidate adapter).

    Claimed with ``FOR UPDATE SKIP LOCKED``; the claimer renews ``heartbeat_at`` and a job
    whose claimer went quiet is claimed again and resumes from its last checkpoint."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        Index(
            "ix_training_jobs_claimable",
            "created_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), default=None, index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[RunStatus] = mapped_column(checked(RunStatus), default=RunStatus.queued)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    steps_total: Mapped[int] = mapped_column(default=0)
    steps_done: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(String(4000), default=None)


class TrainingJobStep(TenantScoped, Base):
    """One optimiser step a job applied, recorded before its checkpoint is written.

    ``(job_id, step)`` is the key, so a step redone after a crash records nothing twice; the
    tenant is the job's."""

    __tablename__ = "training_job_steps"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[str] = mapped_column(String(120))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
