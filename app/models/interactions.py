"""Served interactions and the feedback given on them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TenantScoped, TimestampMixin
from app.models.enums import FeedbackKind, checked


class Interaction(IdMixin, TimestampMixin, TenantScoped, Base):
    """One chat completion: what was asked, what was answered, and what training needs."""

    __tablename__ = "interactions"
    __table_args__ = (Index("ix_interactions_tenant_created", "tenant_id", "created_at"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    adapter_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="SET NULL"), index=True, default=None
    )
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), default=None
    )
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    prompt_token_ids: Mapped[list[int] | None] = mapped_column(ARRAY(Integer), default=None)
    completion_token_ids: Mapped[list[int] | None] = mapped_column(ARRAY(Integer), default=None)
    completion_logprobs: Mapped[list[float] | None] = mapped_column(ARRAY(Float), default=None)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    finish_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    stream: Mapped[bool] = mapped_column(default=False)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class Feedback(IdMixin, TimestampMixin, TenantScoped, Base):
    """A rating, correction or preference about an interaction, with who gave it."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),)

    interaction_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("interactions.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[FeedbackKind] = mapped_column(checked(FeedbackKind))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    adapter_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="SET NULL"), default=None
    )
    author_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    author_api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), default=None
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    compiled_at: Mapped[datetime | None] = mapped_column(default=None)
