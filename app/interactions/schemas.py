"""Review-queue bodies of the operator API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.feedback.schemas import FeedbackOut
from app.models.enums import FeedbackKind


class InteractionOut(BaseModel):
    id: str
    agent: str
    adapter_version: int | None
    created_at: datetime
    request: dict[str, Any]
    output: dict[str, Any] | None
    usage: dict[str, Any] | None
    latency_ms: float | None
    finish_reason: str | None
    error: dict[str, Any] | None
    feedback: list[FeedbackOut] = []
    feedback_kinds: list[FeedbackKind] = Field(
        default=[],
        description="The kinds of feedback given on this interaction, each once: the review "
        "queue's badges (rated, corrected, preferred over another answer).",
    )


class InteractionQuery(BaseModel):
    """Which of the tenant's interactions to list, and which page (newest first)."""

    agent: str | None = None
    """An agent's name."""
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    """A version number (of ``agent``, or of the first agent by name that has it)."""
    unrated: bool = False
    low_rating: bool = False
    has_correction: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class InteractionPage(BaseModel):
    total: int
    items: list[InteractionOut]


class DeadLetterOut(BaseModel):
    """An interaction record the database refused for good, set aside so the rows behind it
    landed (`app.interactions.buffer`)."""

    entry_id: str
    at: datetime
    error: str
    """Why it was refused (the encoder's or the database's error)."""
    interaction_id: str | None
    """The completion id the agent received, when the record could be read."""
    record: str
    """The record as logged (cut at 2,000 characters)."""
