"""Agent and adapter-version bodies of the admin API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.adapters.signals import GateRecord, Signals

DEFAULT_MAX_TOKENS = 256
"""A new agent's cap on a completion when a request sets none: a tiny model asked for an
unbounded answer would otherwise run to the context limit."""


class AgentIn(BaseModel):
    name: str = Field(max_length=63)
    description: str = Field(default="", max_length=2000)
    lora_rank: int = Field(default=16, ge=1, le=64)
    lora_alpha: int = Field(default=32, ge=1, le=1024)
    target_modules: list[str] | None = None
    environment: str | None = None
    """An RL environment whose held-out tasks the promotion gate plays (e.g. "calculator")."""
    default_max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=32_768)
    """Cap on a completion when a request sets neither max_tokens nor max_completion_tokens."""


class AgentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    environment: str | None = None
    """An environment name, or "" to remove the agent's environment."""
    default_max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    fine_tuning_promotes: bool | None = None
    """Whether a fine-tuning job whose candidate passes the gate promotes it (default), or
    leaves it a candidate to promote by hand."""


class AgentOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    lora_rank: int
    lora_alpha: int
    lora_target_modules: list[str]
    live_version: int | None = None
    environment: str | None = None
    default_max_tokens: int | None = None
    fine_tuning_promotes: bool = True


class VersionOut(BaseModel):
    id: uuid.UUID
    number: int
    name: str
    status: str
    source: str
    parent: int | None
    checksum: str
    metrics: dict[str, Any]
    signals: Signals | None = None
    """What the gate compared this version with its parent on (versions a cycle made)."""
    gate: GateRecord | None = None
    """The gate's verdict on it (versions a cycle made)."""
    created_at: datetime


class PromoteIn(BaseModel):
    version: int = Field(ge=1, le=2**31 - 1)
    force: bool = False
    """Promote a version the gate did not pass (failed, or nothing to evaluate on); recorded."""


class RollbackIn(BaseModel):
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    force: bool = False
    """Roll back to a version the gate did not pass (refused, or nothing to evaluate on);
    recorded like a forced promotion."""
