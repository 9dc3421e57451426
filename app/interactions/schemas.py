"""Review-queue bodies of the operator API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.feedback.schemas import FeedbackOut


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


class InteractionPage(BaseModel):
    total: int
    items: list[InteractionOut]
