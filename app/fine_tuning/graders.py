"""The graders a reinforcement job can run: OpenAI's ``string_check`` and ``text_similarity``
(fuzzy match), and clora's ``environment`` (an RL environment's own reward)."""

from __future__ import annotations

import difflib
import re
from typing import Any

_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")


def render(template: str, item: dict[str, Any], output_text: str) -> str:
    """Fill ``{{sample.output_text}}`` and ``{{item.<field>[.<field>...]}}``; a field the line
    lacks renders empty."""

    def value(match: re.Match[str]) -> str:
        path = match.group(1).split(".")
        if path == ["sample", "output_text"]:
            return output_text
        if path[0] != "item":
            return ""
        current: Any = item
        for key in path[1:]:
            current = current.get(key) if isinstance(current, dict) else None
        return "" if current is None else str(current)

    return _TEMPLATE.sub(value, template)


def grade(grader: dict[str, Any], item: dict[str, Any], output_text: str) -> float:
    """The reward in [0, 1] of one sampled text (string graders only)."""
    given = render(grader["input"], item, output_text)
    reference = render(grader["reference"], item, output_text)
    if grader["type"] == "string_check":
        operation = grader["operation"]
        if operation == "eq":
            return float(given == reference)
        if operation == "ne":
            return float(given != reference)
        if operation == "like":
            return float(reference in given)
        return float(reference.lower() in given.lower())  # ilike
    if grader["type"] == "text_similarity":
        return difflib.SequenceMatcher(None, given, reference).ratio()
    raise ValueError(f"grader type {grader['type']!r} grades episodes, not texts")
