"""What the promotion gate compares: each signal as one typed value, measured on the parent
(before) and the candidate (after), with the statistics the gate applies to it.

One schema, in the OpenAPI file: the runner records it in a version's and a run's metrics,
the API returns it (`CycleRunOut.signals`, the version's ``signals``), and the CLI and the UI
render it as it is. The bounds a signal is judged by are computed here, once, and recorded
with it; nothing downstream recomputes them.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIDENCE_Z = 1.2816
"""One-sided 90%: the z of every bound the gate compares."""


def _wilson(share: float, n: int, z: float, sign: int) -> float:
    centre = share + z * z / (2 * n)
    spread = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre + sign * spread) / (1 + z * z / n)


def agreement_upper_bound(agreement: float, n: int, z: float = CONFIDENCE_Z) -> float:
    """The upper end of the Wilson score interval of a share measured on ``n`` examples."""
    return 1.0 if n <= 0 else min(1.0, _wilson(agreement, n, z, +1))


def lower_bound(share: float, n: int, z: float = CONFIDENCE_Z) -> float:
    """The lower end of the Wilson score interval of a share measured on ``n`` examples."""
    return 0.0 if n <= 0 else max(0.0, _wilson(share, n, z, -1))


def copies_allowed(parent_copies: int, n: int) -> int:
    """The most copies a candidate may make among ``n`` prompts: as many as the parent's own
    rate could reach with 90% confidence (a parent that copies nothing allows 1 from 3
    prompts on; the first copy of a correction can be a right answer that happens to equal
    it, "60" to "What is 6 times 10?")."""
    if n <= 0:
        return 0
    return math.floor(n * agreement_upper_bound(parent_copies / n, n) + 1e-9)


class _Signal(BaseModel):
    # Records written by earlier releases carry other keys (and lack some): read what is known.
    model_config = ConfigDict(extra="ignore")

    n: int = 0
    """Examples the signal was measured on."""


class ScoreSignal(_Signal):
    """A score of the parent (before) and the candidate (after), each in 0..1; null when
    nothing was measured."""

    before: float | None = None
    after: float | None = None


class EnvironmentSignal(ScoreSignal):
    """Mean reward on held-out tasks of the agent's environment."""

    name: str | None = None


class ChangedAnswer(BaseModel):
    """A prompt whose answer the candidate changed: the parent's answer and the candidate's,
    as `name({json arguments})` or text."""

    prompt: str = ""
    parent: str = ""
    candidate: str = ""
    kind: str | None = None
    """Where the agent's environment graded the prompt: ``right->wrong``, ``wrong->wrong``,
    ``wrong->right`` or ``right->right``; None where it did not."""


class PreservationSignal(_Signal):
    """The share of held-back untouched prompts whose answer the candidate kept: exactly the
    parent's, or (where the agent's environment grades the prompt) not a right answer turned
    wrong."""

    agreement: float | None = None
    min: float | None = None
    """The rule's ``preserve_min``: what the upper bound must reach."""
    floor: float | None = None
    """``preserve_min - preserve_tolerance``: what the agreement measured must reach."""
    min_examples: int | None = None
    """Fewer prompts than this and the signal is no evidence to promote on."""
    upper_bound: float | None = None
    """The most the agreement could be with 90% confidence: what the gate compares with
    ``min`` (computed here for records that lack it)."""
    changed: list[ChangedAnswer] = Field(default_factory=list)
    """Up to five held-back prompts answered differently (those that count first)."""
    graded: int | None = None
    """How many of the ``n`` prompts the agent's environment graded (None: no environment)."""
    no_worse: int | None = None
    """Changed answers counted as kept: graded, and not a right answer turned wrong (None:
    no environment)."""

    @model_validator(mode="after")
    def _bound(self) -> PreservationSignal:
        if self.upper_bound is None and self.agreement is not None and self.n > 0:
            self.upper_bound = agreement_upper_bound(self.agreement, self.n)
        return self


class CopiesSignal(_Signal):
    """Held-back prompts (those near a correction first) answered with another
    conversation's corrected answer verbatim, by the parent (before) and the candidate."""

    before: int = 0
    after: int = 0
    near: int = 0
    """Prompts near a correction among the ``n``."""
    allowed: int | None = None
    """The most copies the gate allows the candidate, from the parent's own rate."""
    copied: list[ChangedAnswer] = Field(default_factory=list)
    """Up to five prompts the candidate copied onto and the parent did not."""

    @model_validator(mode="after")
    def _allowed(self) -> CopiesSignal:
        if self.allowed is None and self.n > 0:
            self.allowed = copies_allowed(self.before, self.n)
        return self


class Signals(BaseModel):
    """Every signal the gate compared a candidate with its parent on; a signal the cycle did
    not measure is null."""

    model_config = ConfigDict(extra="ignore")

    corrections: ScoreSignal | None = None
    """This cycle's corrected prompts answered as corrected (what should change)."""
    held_out: ScoreSignal | None = None
    """Held-out corrections and golden examples (split ``eval``)."""
    validation: ScoreSignal | None = None
    """A fine-tuning job's validation file (or its grader's mean score)."""
    copies: CopiesSignal | None = None
    preservation: PreservationSignal | None = None
    environment: EnvironmentSignal | None = None

    @classmethod
    def read(cls, metrics: dict[str, Any] | None) -> Signals | None:
        """The signals recorded in a version's or a run's metrics, or None when there are
        none (or they cannot be read)."""
        raw = (metrics or {}).get("signals")
        if not isinstance(raw, dict) or not raw:
            return None
        try:
            return cls.model_validate(raw)
        except ValueError:
            return None

    def record(self) -> dict[str, Any]:
        """As JSON for a version's or a run's metrics (unmeasured signals left out)."""
        return {
            name: signal.model_dump(mode="json")
            for name, signal in self
            if isinstance(signal, BaseModel)
        }


class GateRecord(BaseModel):
    """The gate's verdict on a candidate: ``passed``, ``failed`` or ``needs_evaluation``,
    why, and the signal that failed (if one did)."""

    model_config = ConfigDict(extra="ignore")

    verdict: str
    reason: str = ""
    failed_signal: str | None = None

    @classmethod
    def read(cls, metrics: dict[str, Any] | None) -> GateRecord | None:
        raw = (metrics or {}).get("gate")
        try:
            return cls.model_validate(raw) if isinstance(raw, dict) else None
        except ValueError:
            return None
