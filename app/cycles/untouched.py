"""The agent's untouched traffic in a cycle: what the KL term keeps, what the gate checks.

A cycle reads the newest `PRESERVE_WINDOW` interactions no feedback touched and splits them:
- prompts near a correction (its template, numbers and names aside: `NEAR_CORRECTION`) are
  the ones a correction means to change, and the ones it can spread to as a copy. They are
  never pinned by the KL term. Half of them by id (up to `PRESERVE_NEAR_TRAIN`) train away
  from the copy: the parent's logged answer preferred over the nearest correction's answer
  verbatim (`away_pairs`); the other half (up to `PRESERVE_NEAR`) are held back for the gate's
  copy check (`app.cycles.evaluation.copies`);
- of the others, a fixed third (by id) is held back for the agreement check, and the rest
  (up to `PRESERVE_TRAIN`) train the KL-to-parent term with the parent's logged tokens.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.cycles.evaluation import matches
from app.feedback.compile import assistant_message
from app.interactions.repository import InteractionRepository

PRESERVE_TRAIN = 64
"""Untouched interactions the KL-to-parent term trains on, newest first."""
PRESERVE_HOLDBACK = 64
"""Untouched interactions held back for the gate's agreement check. A learned correction
changes about 2 to 3% of the parent's untouched answers on the bundled model, mostly answers
the parent itself had barely decided (`bench/preservation_drift.py`). The gate refuses 2
changes in 16 prompts but only 6 in 64 (its Wilson bound), so at a 2.9% change rate a sound
candidate is refused in about 8% of cycles with 16 prompts and 1% with 64."""
PRESERVE_NEAR = 32
"""Untouched prompts near a correction held back for the copy check, newest first."""
PRESERVE_NEAR_TRAIN = 16
"""Untouched prompts near a correction that train away from its answer verbatim, newest first
(`bench/copy_guard.py` measured 16 of them)."""
PRESERVE_WINDOW = 3 * PRESERVE_HOLDBACK
"""The newest untouched interactions a cycle reads: a third of them (by id) is held back."""

NEAR_CORRECTION = 0.6
"""A prompt whose words (numbers ignored) overlap a corrected prompt's by at least this
Jaccard share is near that correction: what the correction means to change ("Ana had 90
shells and gave away 5" near "Leo had 96 apples and gave away 4", 0.69), and where a copy of
its answer would land first."""


@dataclass
class UntouchedSplit:
    """A cycle's untouched traffic, split (see the module doc)."""

    kl_rows: list[dict[str, list[int]]] = field(default_factory=list)
    """The KL term's rows: the parent's logged prompt and completion token ids."""
    held_back: list[dict[str, Any]] = field(default_factory=list)
    """Prompts (``{"messages", "tools"}``) for the agreement check."""
    near: list[dict[str, Any]] = field(default_factory=list)
    """Prompts near a correction (``{"messages", "tools"}``) for the copy check."""
    near_train: list[dict[str, Any]] = field(default_factory=list)
    """Prompts near a correction with the answer they were served (``{"messages", "tools",
    "output"}``), to train away from the copy."""
    near_seen: int = 0
    """Untouched prompts near a correction in the window (held back or not)."""


def conversation_key(messages: list[dict[str, Any]]) -> str:
    return json.dumps(messages, sort_keys=True)


def words(messages: list[dict[str, Any]]) -> frozenset[str]:
    """The words of a conversation's last user turn, every number the same word."""
    text = next(
        (str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), ""
    )
    return frozenset("#" if w.isdigit() else w for w in re.findall(r"[a-z]+|\d+", text.lower()))


def near(prompt_words: frozenset[str], corrected: list[frozenset[str]]) -> bool:
    return any(
        len(prompt_words & c) >= NEAR_CORRECTION * len(prompt_words | c) for c in corrected if c
    )


def near_any(text: str, corrected: list[list[dict[str, Any]]]) -> bool:
    """Whether a user prompt ``text`` is near any of the corrected conversations."""
    return near(words([{"role": "user", "content": text}]), [words(m) for m in corrected])


def split_untouched(
    session: Session,
    tenant_id: uuid.UUID,
    agent_id: uuid.UUID,
    corrected: list[list[dict[str, Any]]],
) -> UntouchedSplit:
    """Split the agent's newest untouched traffic; a corrected conversation itself is left
    out (it is the correction's own prompt)."""
    rows = InteractionRepository(session).untouched(tenant_id, agent_id, PRESERVE_WINDOW)
    covered = {conversation_key(m) for m in corrected}
    near_words = [words(m) for m in corrected]
    split = UntouchedSplit()
    for row in rows:
        request = row.request or {}
        messages = list(request.get("messages") or [])
        if not messages:  # a text completion (/v1/completions): no conversation to compare
            continue
        if conversation_key(messages) in covered:
            continue
        prompt = {"messages": messages, "tools": request.get("tools")}
        if near(words(messages), near_words):
            split.near_seen += 1
            # A fixed split by id, as below: even ids train away from the copy, odd ones
            # (and even ones once the training side is full) are checked.
            if row.id.int % 2 == 0 and len(split.near_train) < PRESERVE_NEAR_TRAIN:
                split.near_train.append({**prompt, "output": assistant_message(row.output or {})})
            elif len(split.near) < PRESERVE_NEAR:
                split.near.append(prompt)
            continue
        # A fixed split by id: an interaction stays on its side from cycle to cycle.
        if row.id.int % 3 == 0 and len(split.held_back) < PRESERVE_HOLDBACK:
            split.held_back.append(prompt)
        elif len(split.kl_rows) < PRESERVE_TRAIN:
            split.kl_rows.append(
                {
                    "prompt_token_ids": list(row.prompt_token_ids or []),
                    "completion_token_ids": list(row.completion_token_ids or []),
                }
            )
    return split


def away_pairs(
    near_train: list[dict[str, Any]], corrections: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One preference pair for each near prompt: the answer it was served over the answer of
    the correction whose prompt it is nearest (most words shared), verbatim. A prompt whose
    served answer already is that answer, or is empty, gives no pair."""
    keyed = [(words(c["messages"][:-1]), c["messages"][-1]) for c in corrections]
    pairs = []
    for prompt in near_train:
        prompt_words = words(prompt["messages"])
        overlap = [
            (len(prompt_words & w) / max(1, len(prompt_words | w)), answer)
            for w, answer in keyed
            if near(prompt_words, [w])
        ]
        if not overlap:
            continue
        answer = max(overlap, key=lambda o: o[0])[1]
        served = prompt["output"]
        if not (served.get("content") or served.get("tool_calls")) or matches(served, answer):
            continue
        pairs.append(
            {
                "messages": prompt["messages"],
                "tools": prompt["tools"],
                "chosen": served,
                "rejected": answer,
            }
        )
    return pairs
