"""The OpenAI fine-tuning API's rows: uploaded files, fine-tuning jobs and their events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TenantScoped, TimestampMixin


class TenantFile(IdMixin, TimestampMixin, TenantScoped, Base):
    """A JSONL file uploaded with ``purpose="fine-tune"``, validated line by line on upload.

    The bytes live in Postgres with the rest of the tenant's data (bounded by
    ``CLORA_MAX_FILE_BYTES``), so a job never meets a file half written to a disk."""

    __tablename__ = "files"

    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column("bytes")
    format: Mapped[str] = mapped_column(String(32))
    """What every line is: ``chat``, ``preference`` or ``reinforcement``."""
    lines: Mapped[int] = mapped_column()
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class FineTuningJob(IdMixin, TimestampMixin, TenantScoped, Base):
    """One fine-tuning job: a learning cycle of one agent trained on a file.

    Its status is its cycle run's (``cycle_run_id``) once the run exists; a job waits without
    a run while the agent has another cycle queued or running."""

    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (Index("ix_fine_tuning_jobs_tenant_created", "tenant_id", "created_at"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    model: Mapped[str] = mapped_column(String(200))
    """The model as the request named it: an agent, or ``agent@vN``."""
    base_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="SET NULL"), default=None
    )
    """The version to start from when ``model`` pinned one (else the agent's live version)."""
    method: Mapped[dict[str, Any]] = mapped_column(JSON)
    """``{"type": ..., "hyperparameters": {...}, "grader": {...}}`` with "auto" resolved."""
    training_file_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("files.id", ondelete="SET NULL"), default=None
    )
    validation_file_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("files.id", ondelete="SET NULL"), default=None
    )
    suffix: Mapped[str | None] = mapped_column(String(64), default=None)
    seed: Mapped[int] = mapped_column(default=0)
    job_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, default=None)
    cycle_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("cycle_runs.id", ondelete="SET NULL"), default=None, unique=True
    )
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    """Set when the job was cancelled before its cycle run existed."""


class FineTuningEvent(IdMixin, TimestampMixin, TenantScoped, Base):
    """One line of a job's event log (messages, and metrics at each step)."""

    __tablename__ = "fine_tuning_events"
    __table_args__ = (Index("ix_fine_tuning_events_job_created", "job_id", "created_at"),)

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(8), default="info")
    type: Mapped[str] = mapped_column(String(16), default="message")
    message: Mapped[str] = mapped_column(String(2000))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
