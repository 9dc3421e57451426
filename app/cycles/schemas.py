"""Learning-cycle schedule and run bodies."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.adapters.signals import Signals

LOSSES = ("sft", "dpo", "pg")
"""Loss mixture keys: corrections (sft), preferences (dpo), ratings (pg)."""


class PromotionRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_regression: float = Field(default=0.01, ge=0.0, le=1.0)
    """How much the held-out score and the environment reward may fall (absolute, 0..1)."""
    require_improvement: bool = True
    """Promote only when the candidate fits the new corrections better than the live version."""
    preserve_min: float = Field(default=0.95, ge=0.0, le=1.0)
    """Least share of held-back untouched prompts the candidate must answer as its parent:
    the agreement's 90% upper bound must reach it (the evidence does not show less)."""
    preserve_tolerance: float = Field(default=0.05, ge=0.0, le=1.0)
    """And the agreement measured must reach ``preserve_min`` less this: 15 of 17 (88%) is
    refused at the defaults although its bound (96.7%) allows 95%."""
    refuse_copies: bool = True
    """Refuse a candidate that answers other prompts with a correction's answer verbatim more
    often than its parent (the ``copies`` signal). Off for an agent whose corrections are
    meant to be said everywhere, such as a fixed policy answer."""
    min_examples: int = Field(default=5, ge=1, le=10_000)
    """Examples an evaluation signal needs to count; with none that has them, the cycle ends
    needs_evaluation and promotes nothing."""
    environment_tasks: int = Field(default=200, ge=0, le=5_000)
    """Held-out environment tasks the gate plays on parent and candidate (agents with an
    environment; 0 turns the signal off)."""


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def standard_cron(expression: str) -> bool:
    """Exactly 5 fields of standard syntax, the rule the UI checks too (frontend/src/lib/
    schedule.ts): croniter alone would also take a sixth field, @daily and the H/L/W/#
    extensions, which the UI's parser reads differently."""
    fields = expression.split()
    if len(fields) != 5:
        return False
    for i, field in enumerate(fields):
        text = field.lower()
        for name in _MONTHS if i == 3 else _DAYS if i == 4 else ():
            text = text.replace(name, "0")
        if not re.fullmatch(r"[0-9*,/-]+", text):
            return False
    return True


class ScheduleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["manual", "cron", "every_k"] = "manual"
    cron: str | None = Field(default=None, max_length=120)
    every_k: int | None = Field(default=None, ge=1, le=100_000)
    loss_mixture: dict[str, float] = Field(
        default_factory=lambda: {"sft": 1.0, "pg": 1.0, "dpo": 0.02}
    )
    steps: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="The most optimiser steps a cycle trains; it stops earlier once every "
        "trained correction is the greedy answer by a margin (see docs/LEARNING.md).",
    )
    learning_rate: float = Field(default=3e-4, gt=0.0, le=1.0)
    replay_share: float = Field(default=0.5, ge=0.0, le=1.0)
    kl_coef: float = Field(default=64.0, ge=0.0, le=1000.0)
    copy_guard: float = Field(
        default=0.1,
        ge=0.0,
        le=10.0,
        description="Weight of the pairs that train untouched prompts near a correction away "
        "from its answer verbatim (each prompt's served answer preferred, DPO); 0 turns them "
        "off (see docs/LEARNING.md).",
    )
    promotion_rule: PromotionRule = Field(default_factory=PromotionRule)

    @field_validator("loss_mixture")
    @classmethod
    def _known_losses(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(LOSSES)
        if unknown or any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError(f"weights >= 0 over {list(LOSSES)}, at least one positive")
        return value

    @model_validator(mode="after")
    def _mode_fields(self) -> ScheduleUpdate:
        if self.mode == "cron":
            from croniter import croniter

            if not self.cron or not standard_cron(self.cron) or not croniter.is_valid(self.cron):
                raise ValueError(
                    "mode 'cron' needs a valid 5-field cron expression in 'cron' (numbers, "
                    "month and weekday names, *, ranges a-b, steps /n, lists a,b)"
                )
        if self.mode == "every_k" and not self.every_k:
            raise ValueError("mode 'every_k' needs 'every_k'")
        return self


class CycleRunOut(BaseModel):
    id: str
    agent: str
    status: str
    trigger: str
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    candidate_version: int | None
    metrics: dict[str, Any]
    signals: Signals | None = None
    """What the gate compared the candidate with its parent on (null before evaluation)."""
    error: str | None
