"""RL experiment bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ExperimentConfig(BaseModel):
    """One synchronous RL run: P prompts x G samples per step, one optimiser step each."""

    model_config = ConfigDict(extra="forbid")

    environment: str = Field(default="calculator", max_length=63)
    steps: int = Field(default=10, ge=1, le=1000)
    prompts_per_step: int = Field(default=16, ge=1, le=1024)
    group_size: int = Field(default=8, ge=2, le=64)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    temperature: float = Field(default=1.0, gt=0, le=2)
    max_turns: int = Field(default=4, ge=1, le=16)
    max_tokens: int = Field(default=96, ge=8, le=4096)
    advantage: str = Field(default="grpo", pattern="^(grpo|rloo)$")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    eval_tasks: int = Field(
        default=0, ge=0, le=10_000, description="Greedy held-out tasks per step."
    )
    rollout_mode: Literal["throughput", "seeded"] = Field(
        default="throughput",
        description=(
            "throughput: no per-sequence seeds, one engine request per round of turns; "
            "seeded: every sequence seeded from `seed`, so episodes do not depend on what "
            "else the engine is running (reproducible, slower)."
        ),
    )
    pipeline: bool = Field(
        default=False,
        description=(
            "Roll out step k+1 on the version before step k while step k trains "
            "(one step off-policy, corrected by the clipped importance ratio)."
        ),
    )


class ExperimentCreate(ExperimentConfig):
    agent: str = Field(max_length=63)


class ExperimentStepOut(BaseModel):
    step: int
    adapter_version: int | None
    metrics: dict[str, Any]


class ExperimentOut(BaseModel):
    id: str
    agent: str
    environment: str
    status: str
    config: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    steps: list[ExperimentStepOut]
