"""The promotion gate: compare a candidate with its parent on every signal, never on none.

Signals (each with its number of examples ``n``):
- ``corrections``: corrected prompts of this cycle answered as corrected (what should change);
- ``held_out``: held-out corrections and golden examples (split ``eval``);
- ``validation``: a fine-tuning job's validation file (answered as its lines answer, or for a
  reinforcement job the grader's mean score);
- ``preservation``: on held-back untouched traffic, the share of prompts where the candidate's
  greedy answer equals the parent's (what must not change). It fails when the evidence says
  the agreement is below ``preserve_min``: when even the upper end of its one-sided 90%
  Wilson interval is below it. One changed answer in six is not evidence of forgetting (the
  point estimate, 83%, would refuse it); three in six, or every answer changed, is;
- ``environment``: mean reward on held-out environment tasks, for an agent with one.

``held_out``, ``validation``, ``preservation`` and ``environment`` are evaluation signals: one of them with at
least ``min_examples`` examples must exist, or the cycle ends ``needs_evaluation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from app.models.enums import RunStatus

EVALUATION_SIGNALS = ("held_out", "validation", "preservation", "environment")
_SCORED = {"held_out": "held-out corrections", "validation": "the validation file's score"}
CONFIDENCE_Z = 1.2816
"""One-sided 90%: the z of the bound the preservation check compares with ``preserve_min``."""


def agreement_upper_bound(agreement: float, n: int, z: float = CONFIDENCE_Z) -> float:
    """The upper end of the Wilson score interval of an agreement measured on ``n`` prompts."""
    if n <= 0:
        return 1.0
    centre = agreement + z * z / (2 * n)
    spread = z * math.sqrt(agreement * (1 - agreement) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


@dataclass(frozen=True)
class Verdict:
    """What the gate decided, why, and which signal failed (if one did)."""

    status: RunStatus
    reason: str
    failed_signal: str | None = None

    @property
    def promote(self) -> bool:
        return self.status == RunStatus.succeeded

    def as_dict(self) -> dict[str, Any]:
        verdict = {
            RunStatus.succeeded: "passed",
            RunStatus.rejected: "failed",
            RunStatus.needs_evaluation: "needs_evaluation",
        }[self.status]
        return {"verdict": verdict, "reason": self.reason, "failed_signal": self.failed_signal}


def decide(signals: dict[str, dict[str, Any]], rule: dict[str, Any]) -> Verdict:
    """Apply the promotion rule to the measured signals (see the module doc)."""
    tolerance = float(rule.get("max_regression", 0.01))
    preserve_min = float(rule.get("preserve_min", 0.95))
    enough = int(rule.get("min_examples", 5))

    def measured(name: str) -> dict[str, Any] | None:
        signal = signals.get(name) or {}
        return signal if int(signal.get("n", 0)) >= enough else None

    for name, what in _SCORED.items():
        held = measured(name)
        if held is not None and held["after"] < held["before"] - tolerance - 1e-9:
            return Verdict(
                RunStatus.rejected,
                f"{name}: {what} fell from {held['before']:.3f} to "
                f"{held['after']:.3f} (n={held['n']})",
                name,
            )
    kept = measured("preservation")
    if kept is not None:
        upper = agreement_upper_bound(float(kept["agreement"]), int(kept["n"]))
        if upper < preserve_min - 1e-9:
            return Verdict(
                RunStatus.rejected,
                f"preservation: the candidate answers {kept['agreement']:.1%} of untouched "
                f"prompts as the parent does (n={kept['n']}; at most {upper:.1%} with 90% "
                f"confidence), below {preserve_min:.0%}",
                "preservation",
            )
    env = measured("environment")
    if env is not None and env["after"] < env["before"] - tolerance - 1e-9:
        return Verdict(
            RunStatus.rejected,
            f"environment: {env['name']} reward fell from {env['before']:.3f} to "
            f"{env['after']:.3f} (n={env['n']})",
            "environment",
        )
    evaluated = [name for name in EVALUATION_SIGNALS if measured(name) is not None]
    if not evaluated:
        return Verdict(
            RunStatus.needs_evaluation,
            f"needs evaluation: no signal has {enough} or more examples to compare the "
            "candidate with its parent. Add held-out examples (`clora dataset import AGENT "
            "FILE --split eval`), serve some traffic to the agent, or give the agent an "
            "environment; an admin may also promote the candidate with force.",
        )
    fixes = signals.get("corrections") or {}
    if rule.get("require_improvement", True) and int(fixes.get("n", 0)) > 0:
        before, after = fixes["before"], fixes["after"]
        if after < before or (after == before and before < 1.0):
            return Verdict(
                RunStatus.rejected,
                f"corrections: no improvement on this cycle's corrections "
                f"({before:.3f} -> {after:.3f}, n={fixes['n']})",
                "corrections",
            )
    return Verdict(RunStatus.succeeded, "promoted: no regression on " + ", ".join(evaluated))
