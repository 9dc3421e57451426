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


class InteractionPage(BaseModel):
    total: int
    items: list[InteractionOut]
