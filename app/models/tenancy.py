"""Tenants, their API keys, users and agents."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TenantScoped, TimestampMixin
from app.models.enums import Role, checked

SLUG_PATTERN = "^[a-z0-9][a-z0-9-]{0,62}$"


class Tenant(IdMixin, TimestampMixin, Base):
    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint(f"slug ~ '{SLUG_PATTERN}'", name="slug_format"),)

    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class ApiKey(IdMixin, TimestampMixin, TenantScoped, Base):
    """An agent-facing key; only a slow hash and a short visible prefix are stored."""

    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class User(IdMixin, TimestampMixin, Base):
    """A person; tenant-scoped unless a platform admin."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "(role = 'platform_admin') = (tenant_id IS NULL)", name="tenant_matches_role"
        ),
    )

    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(checked(Role))
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    # Carried by each session token: bumping it ends every session of the user on the server.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")


class PersonalAccessToken(IdMixin, TimestampMixin, Base):
    """A user's own bearer token for `/api` (app/users/tokens.py); only its hash is kept."""

    __tablename__ = "personal_access_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(40), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Agent(IdMixin, TimestampMixin, TenantScoped, Base):
    """A tenant's agent: one adapter lineage with its own LoRA settings."""

    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(f"name ~ '{SLUG_PATTERN}'", name="name_format"),
    )

    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(String(2000), default="")
    lora_rank: Mapped[int] = mapped_column(default=16)
    lora_alpha: Mapped[int] = mapped_column(default=32)
    lora_target_modules: Mapped[list[str]] = mapped_column(
        JSON,
        default=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )
    live_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("adapter_versions.id", use_alter=True, ondelete="SET NULL"), default=None
    )
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
