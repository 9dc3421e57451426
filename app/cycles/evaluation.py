"""Does a version produce the corrected output? Greedy generations through the engine."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from app.core.errors import EngineUnavailable

if TYPE_CHECKING:
    from app.cycles.stages import CorrectedAnswer


def _normal_calls(calls: list[dict[str, Any]] | None) -> list[tuple[Any, Any]]:
    out = []
    for call in calls or []:
        function = call.get("function") or {}
        try:
            args = json.loads(function.get("arguments") or "{}")
        except json.JSONDecodeError:
            args = function.get("arguments")
        out.append((function.get("name"), args))
    return out


def matches(produced: dict[str, Any], target: dict[str, Any]) -> bool:
    """Same tool calls (name and parsed arguments) and the same text, ignoring outer spaces."""
    if _normal_calls(produced.get("tool_calls")) != _normal_calls(target.get("tool_calls")):
        return False
    return (produced.get("content") or "").strip() == (target.get("content") or "").strip()


def greedy(
    engine_url: str,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    max_tokens: int = 96,
) -> dict[str, Any]:
    """The model's greedy answer to a conversation, as an assistant message."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    if tools:
        body["tools"] = tools
    try:
        resp = httpx.post(f"{engine_url}/v1/chat/completions", json=body, timeout=120)
    except httpx.TransportError as exc:
        raise EngineUnavailable(f"engine unreachable during evaluation: {exc}") from exc
    if resp.status_code != 200:
        raise EngineUnavailable(f"engine error during evaluation: {resp.text[:300]}")
    return resp.json()["choices"][0]["message"]


def score(engine_url: str, model: str, examples: Sequence[dict[str, Any]]) -> float | None:
    """Share of SFT examples whose last assistant message the model reproduces greedily."""
    if not examples:
        return None
    hits = sum(
        matches(greedy(engine_url, model, p["messages"][:-1], p.get("tools")), p["messages"][-1])
        for p in examples
    )
    return hits / len(examples)


def compare(
    engine_url: str, parent: str, candidate: str, prompts: Sequence[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The parent's and the candidate's greedy answers to each prompt (``{"messages",
    "tools"}``), in prompt order."""
    return [
        (
            greedy(engine_url, parent, p["messages"], p.get("tools")),
            greedy(engine_url, candidate, p["messages"], p.get("tools")),
        )
        for p in prompts
    ]


def _user_text(messages: list[dict[str, Any]]) -> str:
    return str(next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), ""))


#: A changed answer the environment graded, as ``parent->candidate``: ``right->wrong`` is
#: the only change that counts against agreement on a graded prompt.
WORSE = "right->wrong"


def agreement(
    prompts: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    grades: Sequence[tuple[bool, bool] | None] | None = None,
) -> tuple[float | None, list[dict[str, Any]], int]:
    """Share of prompts whose answer the candidate kept (``pairs`` from `compare`), up to
    five of the prompts where it changed (last user message, parent's answer, candidate's
    answer, and for a graded prompt the change's kind, ``right->wrong`` first), and how many
    changed answers count as kept because the environment graded them no worse.

    An answer is kept when it is the parent's exactly (same tool calls and arguments, or the
    same text). Where the agent's environment grades a prompt (``grades``: whether the
    parent's and the candidate's answers are right first steps, None where it cannot), a
    change counts against agreement only when it turns a right answer wrong: a wrong answer
    turned into another wrong one, or into a right one, breaks nothing."""
    if not prompts:
        return None, [], 0
    grades = grades if grades is not None else [None] * len(prompts)
    kept = no_worse = 0
    changed: list[dict[str, Any]] = []
    for p, (before, after), grade in zip(prompts, pairs, grades, strict=True):
        if matches(after, before):
            kept += 1
            continue
        kind: str | None = None
        if grade is not None:
            kind = "->".join("right" if ok else "wrong" for ok in grade)
            if kind != WORSE:
                kept += 1
                no_worse += 1
        changed.append(
            {
                "prompt": _user_text(p["messages"])[:200],
                "parent": brief(before),
                "candidate": brief(after),
                "kind": kind,
            }
        )
    counted = [c for c in changed if c["kind"] in (None, WORSE)]
    shown = (counted + [c for c in changed if c not in counted])[:5]
    return kept / len(prompts), shown, no_worse


def copies(
    prompts: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    corrected: Sequence[CorrectedAnswer],
) -> dict[str, Any]:
    """How many of ``prompts`` each side answers with a correction's answer verbatim (the
    same text, or the same tool calls with the same arguments), counting only corrections of
    *other* conversations; ``pairs`` from
    `compare`. Up to five of the candidate's copies the parent did not make are listed."""
    key = lambda m: json.dumps(m, sort_keys=True)  # noqa: E731
    keyed = [(key(c.messages), c.answer) for c in corrected]
    before = after = 0
    examples: list[dict[str, Any]] = []
    for p, (parent, candidate) in zip(prompts, pairs, strict=True):
        own = key(p["messages"])
        answers = [answer for conversation, answer in keyed if conversation != own]
        parent_copies = any(matches(parent, a) for a in answers)
        candidate_copies = any(matches(candidate, a) for a in answers)
        before += parent_copies
        after += candidate_copies
        if candidate_copies and not parent_copies and len(examples) < 5:
            examples.append(
                {
                    "prompt": _user_text(p["messages"])[:200],
                    "parent": brief(parent),
                    "candidate": brief(candidate),
                }
            )
    return {"n": len(prompts), "before": before, "after": after, "copied": examples}


def brief(message: dict[str, Any]) -> str:
    """A message as the preservation check reports it: `name({json arguments})`, or its text."""
    calls = _normal_calls(message.get("tool_calls"))
    if calls:
        return "; ".join(f"{name}({json.dumps(args)})" for name, args in calls)[:200]
    return (message.get("content") or "")[:200]
