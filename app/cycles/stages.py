"""The typed values a learning cycle passes between its stages.

A cycle is ``plan -> train -> publish -> evaluate -> decide`` (`app.cycles.runner`):

- `app.cycles.plan.plan_cycle` reads everything in one transaction into a `CyclePlan`: what to
  train (a `TrainingRequest`), what to measure (an `EvaluationPlan`) and, for a fine-tuning
  job, the `Job` it runs;
- training turns the request into a `TrainStep` history and an adapter folder;
- publishing makes that folder a `Candidate` version;
- evaluation measures `Signals` on the parent and the candidate;
- `app.cycles.gate.decide` turns the signals and the rule into a `Verdict`.

Learning cycles, fine-tuning jobs and reinforcement jobs share these stages: a job's plan
differs only in its values (its file's lines to train on, its method's loss, its validation
file to measure), never in a branch inside a stage. Examples stay the JSON documents they are
stored as (`Payload`); everything around them is typed here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from app.cycles.schemas import PromotionRule
from app.training.client import Payload, TrainingRequest

__all__ = [
    "Candidate",
    "CorrectedAnswer",
    "CyclePlan",
    "EnvironmentScore",
    "EvaluationPlan",
    "Job",
    "Payload",
    "Rollouts",
    "TrainingRequest",
    "Version",
]


@dataclass(frozen=True)
class Version:
    """An adapter version a cycle starts from."""

    id: uuid.UUID
    number: int
    path: str


@dataclass(frozen=True)
class EnvironmentScore:
    """A version's measured reward on ``n`` held-out tasks of environment ``name`` (cached in
    its metrics, reused by later cycles)."""

    name: str
    n: int
    reward: float

    @classmethod
    def read(cls, cached: Any) -> EnvironmentScore | None:
        if not isinstance(cached, dict):
            return None
        try:
            return cls(str(cached["name"]), int(cached["n"]), float(cached["reward"]))
        except (KeyError, TypeError, ValueError):
            return None

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "reward": self.reward}


@dataclass(frozen=True)
class CorrectedAnswer:
    """A correction as the copies check knows it: the conversation it answers and its
    answer (an assistant message)."""

    messages: list[Payload]
    answer: Payload


@dataclass(frozen=True)
class Rollouts:
    """A reinforcement job's sampling: ``n`` rollouts of each of ``prompts`` on the parent,
    graded by ``grader`` (its JSON spec), trained for ``epochs``; ``measured`` is the sample
    of training prompts the ``corrections`` signal grades."""

    grader: dict[str, Any]
    prompts: list[Payload]
    n: int
    epochs: int
    measured: list[Payload]


@dataclass(frozen=True)
class Job:
    """The fine-tuning job a cycle runs (`app.fine_tuning`)."""

    id: uuid.UUID
    method: str
    """"supervised", "dpo" or "reinforcement"."""
    suffix: str | None
    promote: bool
    """Whether a candidate that passes goes live (the agent's ``fine_tuning_promotes``)."""
    rollouts: Rollouts | None = None


@dataclass(frozen=True)
class EvaluationPlan:
    """What the gate measures the candidate on, against its parent."""

    rule: PromotionRule
    corrections: list[Payload] = field(default_factory=list)
    """This cycle's new corrections (a job: a sample of its training lines)."""
    held_out: list[Payload] = field(default_factory=list)
    """Held-out corrections and golden examples (split ``eval``)."""
    validation: list[Payload] = field(default_factory=list)
    """A job's validation lines."""
    held_back: list[Payload] = field(default_factory=list)
    """Untouched prompts held back from training: the preservation signal's."""
    near: list[Payload] = field(default_factory=list)
    """Untouched prompts near a correction, held back for the copies check."""
    corrected: list[CorrectedAnswer] = field(default_factory=list)
    """Every correction's answer: what a copy would be."""
    environment: str | None = None
    environment_tasks: int = 0
    parent_environment: EnvironmentScore | None = None
    """The parent's reward, when an earlier cycle measured it on the same tasks."""


@dataclass(frozen=True)
class CyclePlan:
    """Everything a cycle needs after planning, as plain values (no session)."""

    tenant_id: uuid.UUID
    run_id: uuid.UUID
    agent_id: uuid.UUID
    tenant_slug: str
    agent_name: str
    parent: Version | None
    """The version the cycle trains from; None for an agent with no version yet."""
    training: TrainingRequest
    evaluation: EvaluationPlan
    counts: dict[str, int]
    """Examples of each kind the cycle planned with (recorded in the run's metrics)."""
    job: Job | None = None

    @property
    def promote(self) -> bool:
        """Whether a candidate that passes the gate goes live."""
        return self.job.promote if self.job else True


@dataclass(frozen=True)
class Candidate:
    """The version a cycle published, and its name in the engines."""

    id: uuid.UUID
    name: str
    path: str
    label: str
    """``agent@vN``, for messages."""
