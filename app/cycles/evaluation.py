"""Does a version produce the corrected output? Greedy generations through the engine."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from app.core.errors import EngineUnavailable


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
    engine_url: str, model: str, payload: dict[str, Any], max_tokens: int = 96
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": payload["messages"][:-1],
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    if payload.get("tools"):
        body["tools"] = payload["tools"]
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
    hits = sum(matches(greedy(engine_url, model, p), p["messages"][-1]) for p in examples)
    return hits / len(examples)
