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
- ``preservation``: on held-back untouched traffic, the share of prompts whose answer the
  candidate kept (what must not change): its greedy answer equals the parent's, or, where the
  agent's environment grades the prompt, a changed answer is not a right one turned wrong. It fails when the agreement
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

from dataclasses import dataclass
from typing import Any

from app.adapters.signals import (
    ScoreSignal,
    Signals,
    agreement_upper_bound,
    copies_allowed,
    lower_bound,
)
from app.cycles.schemas import PromotionRule
from app.models.enums import RunStatus

EVALUATION_SIGNALS = ("held_out", "validation", "preservation", "environment")
_SCORED = {"held_out": "held-out corrections", "validation": "the validation file's score"}


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


def decide(signals: Signals, rule: PromotionRule) -> Verdict:
    """Apply the promotion rule to the measured signals (see the module doc)."""
    tolerance = rule.max_regression
    preserve_min = rule.preserve_min
    preserve_floor = preserve_min - rule.preserve_tolerance
    enough = rule.min_examples

    def counts(name: str) -> bool:
        signal = getattr(signals, name)
        return signal is not None and signal.n >= enough

    def thin(signal: Any) -> bool:
        return signal is not None and 0 < signal.n < enough

    scored: list[tuple[str, ScoreSignal | None, str]] = [
        ("held_out", signals.held_out, _SCORED["held_out"]),
        ("validation", signals.validation, _SCORED["validation"]),
        (
            "environment",
            signals.environment,
            f"{signals.environment.name} reward" if signals.environment else "reward",
        ),
    ]
    for name, held, label in scored:
        if held is None or held.before is None or held.after is None:
            continue
        if counts(name) and held.after < held.before - tolerance - 1e-9:
            return Verdict(
                RunStatus.rejected,
                f"{name}: {label} fell from {held.before:.3f} to {held.after:.3f} (n={held.n})",
                name,
            )
        if thin(held) and _fell_beyond_noise(
            held.before, held.after, held.n, held.before - tolerance
        ):
            return Verdict(
                RunStatus.rejected,
                f"{name}: fell from {held.before:.3f} to {held.after:.3f} on {held.n} "
                "examples, beyond their noise (too few to count as evidence, enough to refuse)",
                name,
            )
    copied = signals.copies
    if rule.refuse_copies and copied is not None and copied.n > 0:
        allowed = copies_allowed(copied.before, copied.n)
        if copied.after > allowed:
            return Verdict(
                RunStatus.rejected,
                f"copies: the candidate answers {copied.after} of {copied.n} other "
                f"untouched prompts with a correction's answer verbatim (the parent "
                f"{copied.before}; at most {allowed} allowed): it copies the correction "
                "instead of learning it",
                "copies",
            )
    kept = signals.preservation
    if kept is not None and kept.agreement is not None and counts("preservation"):
        agreement = kept.agreement
        upper = agreement_upper_bound(agreement, kept.n)
        if upper < preserve_min - 1e-9 or agreement < preserve_floor - 1e-9:
            return Verdict(
                RunStatus.rejected,
                f"preservation: the candidate keeps {agreement:.1%} of untouched "
                f"prompts' answers (n={kept.n}; at most {upper:.1%} with 90% "
                f"confidence), below {preserve_min:.0%}"
                + (
                    ""
                    if agreement >= preserve_floor - 1e-9
                    else f" (and below {preserve_floor:.0%})"
                ),
                "preservation",
            )
    if (
        kept is not None
        and kept.agreement is not None
        and thin(kept)
        and _fell_beyond_noise(1.0, kept.agreement, kept.n, preserve_min)
    ):
        return Verdict(
            RunStatus.rejected,
            f"preservation: the candidate keeps {kept.agreement:.1%} of untouched prompts' "
            f"answers, on {kept.n} prompts: beyond their noise (too few to count as "
            "evidence, enough to refuse)",
            "preservation",
        )
    evaluated = [name for name in EVALUATION_SIGNALS if counts(name)]
    if not evaluated:
        return Verdict(
            RunStatus.needs_evaluation,
            f"needs evaluation: no signal has {enough} or more examples to compare the "
            "candidate with its parent. Add held-out examples (`clora dataset import AGENT "
            "FILE --split eval`), serve some traffic to the agent, or give the agent an "
            "environment; an admin may also promote the candidate with force.",
        )
    fixes = signals.corrections
    if (
        rule.require_improvement
        and fixes is not None
        and fixes.n > 0
        and fixes.before is not None
        and fixes.after is not None
    ):
        before, after = fixes.before, fixes.after
        if after < before or (after == before and before < 1.0):
            return Verdict(
                RunStatus.rejected,
                f"corrections: no improvement on this cycle's corrections "
                f"({before:.3f} -> {after:.3f}, n={fixes.n})",
                "corrections",
            )
    return Verdict(RunStatus.succeeded, "promoted: no regression on " + ", ".join(evaluated))
