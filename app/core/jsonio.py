"""JSON on the gateway's request path, through orjson: the engine's answers (with every
token's id and logprob) are parsed, re-encoded for the caller and encoded again for the
interaction log on every request, and the standard library's encoder was a visible share of
what the gateway adds (bench/gateway_overhead.py)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8; UUIDs and datetimes (ISO 8601) encode as strings."""
    return orjson.dumps(value)


def loads(raw: bytes | str) -> Any:
    """Parse JSON; the non-standard ``NaN`` / ``Infinity`` literals some servers write are
    read as Python does."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
