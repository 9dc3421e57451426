"""RL experiments and their per-step metrics."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TenantScoped, TimestampMixin
from app.models.enums import RunStatus, checked


class Experiment(IdMixin, TimestampMixin, TenantScoped, Base):
    """A synchronous RL run of one agent on one environment."""

    __tablename__ = "experiments"

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    environment: Mapped[str] = mapped_column(String(63))
    status: Mapped[RunStatus] = mapped_column(checked(RunStatus), default=RunStatus.queued)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(String(4000), default=None)


class ExperimentStep(IdMixin, TimestampMixin, TenantScoped, Base):
    """Metrics of one RL step, written as it happens."""

    __tablename__ = "experiment_steps"
    __table_args__ = (UniqueConstraint("experiment_id", "step"),)

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[int]
    adapter_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="SET NULL"), default=None
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
