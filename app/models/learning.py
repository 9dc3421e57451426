"""Training examples, learning-cycle schedules and cycle runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TenantScoped, TimestampMixin
from app.models.enums import ExampleKind, ExampleSplit, RunStatus, ScheduleMode, checked


class TrainingExample(IdMixin, TimestampMixin, TenantScoped, Base):
    """One unit of training signal with its provenance."""

    __tablename__ = "training_examples"
    __table_args__ = (UniqueConstraint("feedback_id", "kind"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ExampleKind] = mapped_column(checked(ExampleKind))
    split: Mapped[ExampleSplit] = mapped_column(checked(ExampleSplit), default=ExampleSplit.train)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    feedback_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("feedback.id", ondelete="CASCADE"), default=None
    )
    interaction_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("interactions.id", ondelete="SET NULL"), default=None
    )
    adapter_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="SET NULL"), default=None
    )
    author_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    superseded_at: Mapped[datetime | None] = mapped_column(default=None)


class LearningSchedule(IdMixin, TimestampMixin, TenantScoped, Base):
    """How and when one agent learns. It stores only what an admin chose: a NULL setting (and
    a promotion-rule key that is absent) reads as the current default, `ScheduleUpdate`'s
    (`app/cycles/service.effective_schedule`), so an upgrade's new defaults reach every agent
    that never changed them."""

    __tablename__ = "learning_schedules"

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), unique=True
    )
    mode: Mapped[ScheduleMode] = mapped_column(checked(ScheduleMode), default=ScheduleMode.manual)
    cron: Mapped[str | None] = mapped_column(String(120), default=None)
    every_k: Mapped[int | None] = mapped_column(default=None)
    loss_mixture: Mapped[dict[str, float] | None] = mapped_column(JSON, default=None)
    steps: Mapped[int | None] = mapped_column(default=None)
    learning_rate: Mapped[float | None] = mapped_column(default=None)
    replay_share: Mapped[float | None] = mapped_column(default=None)
    kl_coef: Mapped[float | None] = mapped_column(default=None)
    copy_guard: Mapped[float | None] = mapped_column(default=None)
    promotion_rule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_fired_at: Mapped[datetime | None] = mapped_column(default=None)


class CycleRun(IdMixin, TimestampMixin, TenantScoped, Base):
    """One learning cycle of one agent: gather, train, evaluate, maybe promote."""

    __tablename__ = "cycle_runs"
    __table_args__ = (
        # Two cycles of one agent never run at the same time.
        Index(
            "uq_cycle_runs_one_active_per_agent",
            "agent_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[RunStatus] = mapped_column(checked(RunStatus), default=RunStatus.queued)
    trigger: Mapped[str] = mapped_column(String(32), default="manual")
    progress: Mapped[float] = mapped_column(default=0.0)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)
    """When a running cycle must have ended (`app.cycles.plan.deadline_s`); past it the reaper
    fails the run, whatever its heartbeat says."""
    base_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="SET NULL"), default=None
    )
    candidate_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="SET NULL"), default=None
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(String(4000), default=None)
