"""Feedback request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.messages import ToolCall


class CorrectedMessage(BaseModel):
    """The assistant message as it should have been: text, tool calls, or both."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(default=None, max_length=100_000)
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _not_empty(self) -> CorrectedMessage:
        if not self.content and not self.tool_calls:
            raise ValueError("a correction needs content or tool_calls")
        return self


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thumbs: Literal["up", "down"] | None = None
    score: float | None = Field(default=None, ge=-1.0, le=1.0, description="In [-1, 1].")

    @model_validator(mode="after")
    def _one(self) -> Rating:
        if (self.thumbs is None) == (self.score is None):
            raise ValueError("give exactly one of thumbs or score")
        return self

    @property
    def reward(self) -> float:
        if self.thumbs is not None:
            return 1.0 if self.thumbs == "up" else -1.0
        assert self.score is not None
        return self.score


class Preference(BaseModel):
    """Which of two outputs is better: another interaction, or an explicit pair of messages."""

    model_config = ConfigDict(extra="forbid")

    rejected_interaction_id: str | None = None
    chosen: CorrectedMessage | None = None
    rejected: CorrectedMessage | None = None

    @model_validator(mode="after")
    def _shape(self) -> Preference:
        if self.rejected_interaction_id is None and (self.chosen is None or self.rejected is None):
            raise ValueError("give rejected_interaction_id, or both chosen and rejected")
        return self


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interaction_id: str = Field(description="The completion id the agent received.", max_length=64)
    kind: Literal["rating", "correction", "preference"]
    choice_index: int = Field(
        default=0, ge=0, le=7, description="Which choice of an n > 1 completion this is about."
    )
    rating: Rating | None = None
    correction: CorrectedMessage | None = None
    preference: Preference | None = None
    note: str | None = Field(default=None, max_length=4000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    def check_kind(self) -> None:
        """The field named by ``kind`` is given, and no other kind's field."""
        from app.core.errors import InvalidRequest

        if getattr(self, self.kind) is None:
            raise InvalidRequest(
                f"kind '{self.kind}' needs the '{self.kind}' field", param=self.kind
            )
        for other in {"rating", "correction", "preference"} - {self.kind}:
            if getattr(self, other) is not None:
                raise InvalidRequest(f"'{other}' does not go with kind '{self.kind}'", param=other)

    def payload(self) -> dict[str, Any]:
        body = getattr(self, self.kind)
        data: dict[str, Any] = {self.kind: body.model_dump(exclude_none=True)}
        if self.note:
            data["note"] = self.note
        if self.choice_index:
            data["choice_index"] = self.choice_index
        return data


class FeedbackOut(BaseModel):
    id: str
    object: Literal["feedback"] = "feedback"
    interaction_id: str
    kind: str
    payload: dict[str, Any]
    adapter_version_id: str | None
    created_at: datetime
