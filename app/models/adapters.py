"""Immutable adapter versions of an agent's lineage."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TenantScoped, TimestampMixin
from app.models.enums import AdapterStatus, checked


class AdapterVersion(IdMixin, TimestampMixin, TenantScoped, Base):
    """``<tenant>/<agent>@v<number>``: a PEFT adapter folder that never changes once written."""

    __tablename__ = "adapter_versions"
    __table_args__ = (UniqueConstraint("agent_id", "number"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int]
    path: Mapped[str] = mapped_column(String(1000))
    checksum: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[AdapterStatus] = mapped_column(
        checked(AdapterStatus), default=AdapterStatus.candidate
    )
    source: Mapped[str] = mapped_column(String(32), default="manual")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
