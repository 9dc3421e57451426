"""The promotion gate: compare a candidate with its parent on every signal, never on none.

Signals (each with its number of examples ``n``):
- ``corrections``: corrected prompts of this cycle answered as corrected (what should change);
- ``held_out``: held-out corrections and golden examples (split ``eval``);
- ``validation``: a fine-tuning job's validation file (answered as its lines answer, or for a
  reinforcement job the grader's mean score);
- ``copies``: on held-back untouched prompts, those near a correction first, how many the
  candidate answers with another conversation's corrected answer verbatim, against the
  parent. It fails when the candidate's count exceeds what the parent's own rate allows at
  90% confidence (`copies_allowed`: with a parent that copies nothing, 2 copies among 3 or
  more prompts fail);
- ``preservation``: on held-back untouched traffic, the share of prompts where the candidate's
  greedy answer equals the parent's (what must not change). It fails when the agreement
  measured is below ``preserve_min - preserve_tolerance`` (90% at the defaults), or when even
  the upper end of its one-sided 90% Wilson interval is below ``preserve_min``. At the
  defaults 16 of 17 passes, 15 of 17 (88%) fails, 29 of 32 (91%) passes, 58 of 64 (91%)
  fails on the bound;
- ``environment``: mean reward on held-out environment tasks, for an agent with one.

``held_out``, ``validation``, ``preservation`` and ``environment`` are evaluation signals: one
of them with at least ``min_examples`` examples must exist, or the cycle ends
``needs_evaluation``. A signal with fewer examples does not count as evidence, but it still
refuses a fall beyond its own noise: when the candidate's 90% upper bound is below the
parent's 90% lower bound on the same examples (held-out 4 of 4 to 0 of 4 refuses; to 3 of 4
does not), and below what the rule accepts (``before - max_regression``; ``preserve_min`` for
preservation): a rule with ``max_regression`` 1 or ``preserve_min`` 0 never refuses on them.
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


def _fell_beyond_noise(before: float, after: float, n: int, allowed: float) -> bool:
    """A fall on few examples that their noise cannot explain, and the rule does not allow:
    the candidate's upper bound is below the parent's lower bound, and below ``allowed`` (the
    lowest result the rule accepts: ``before - max_regression``, or ``preserve_min``)."""
    return agreement_upper_bound(after, n) < min(lower_bound(before, n), allowed) - 1e-9


def decide(signals: dict[str, dict[str, Any]], rule: dict[str, Any]) -> Verdict:
    """Apply the promotion rule to the measured signals (see the module doc)."""
    tolerance = float(rule.get("max_regression", 0.01))
    preserve_min = float(rule.get("preserve_min", 0.95))
    preserve_floor = preserve_min - float(rule.get("preserve_tolerance", 0.05))
    enough = int(rule.get("min_examples", 5))

    def measured(name: str) -> dict[str, Any] | None:
        signal = signals.get(name) or {}
        return signal if int(signal.get("n", 0)) >= enough else None

    def few(name: str) -> dict[str, Any] | None:
        signal = signals.get(name) or {}
        return signal if 0 < int(signal.get("n", 0)) < enough else None

    for name, what in (*_SCORED.items(), ("environment", "reward")):
        held = measured(name)
        if held is not None and held["after"] < held["before"] - tolerance - 1e-9:
            label = f"{held['name']} reward" if name == "environment" else what
            return Verdict(
                RunStatus.rejected,
                f"{name}: {label} fell from {held['before']:.3f} to "
                f"{held['after']:.3f} (n={held['n']})",
                name,
            )
        thin = few(name)
        if thin is not None and _fell_beyond_noise(
            thin["before"], thin["after"], thin["n"], thin["before"] - tolerance
        ):
            return Verdict(
                RunStatus.rejected,
                f"{name}: fell from {thin['before']:.3f} to {thin['after']:.3f} on "
                f"{thin['n']} examples, beyond their noise (too few to count as evidence, "
                "enough to refuse)",
                name,
            )
    copied = signals.get("copies") or {}
    if rule.get("refuse_copies", True) and int(copied.get("n", 0)) > 0:
        allowed = copies_allowed(int(copied["before"]), int(copied["n"]))
        if int(copied["after"]) > allowed:
            return Verdict(
                RunStatus.rejected,
                f"copies: the candidate answers {copied['after']} of {copied['n']} other "
                f"untouched prompts with a correction's answer verbatim (the parent "
                f"{copied['before']}; at most {allowed} allowed): it copies the correction "
                "instead of learning it",
                "copies",
            )
    kept = measured("preservation")
    if kept is not None:
        agreement = float(kept["agreement"])
        upper = agreement_upper_bound(agreement, int(kept["n"]))
        if upper < preserve_min - 1e-9 or agreement < preserve_floor - 1e-9:
            return Verdict(
                RunStatus.rejected,
                f"preservation: the candidate answers {agreement:.1%} of untouched "
                f"prompts as the parent does (n={kept['n']}; at most {upper:.1%} with 90% "
                f"confidence), below {preserve_min:.0%}"
                + (
                    ""
                    if agreement >= preserve_floor - 1e-9
                    else f" (and below {preserve_floor:.0%})"
                ),
                "preservation",
            )
    thin_kept = few("preservation")
    if (
        thin_kept is not None
        and thin_kept.get("agreement") is not None
        and _fell_beyond_noise(
            1.0, float(thin_kept["agreement"]), int(thin_kept["n"]), preserve_min
        )
    ):
        return Verdict(
            RunStatus.rejected,
            f"preservation: the candidate answers {thin_kept['agreement']:.1%} of "
            f"untouched prompts as the parent does, on {thin_kept['n']} prompts: beyond "
            "their noise (too few to count as evidence, enough to refuse)",
            "preservation",
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
