"""JSON on the gateway's request path, through orjson: the engine's answers (with every
token's id and logprob) are parsed, re-encoded for the caller and encoded again for the
interaction log on every request, and the standard library's encoder was a visible share of
what the gateway adds (bench/gateway_overhead.py)."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8; UUIDs and datetimes (ISO 8601) encode as strings.

    Text UTF-8 cannot hold (a lone surrogate, which a model's output can carry as the JSON
    escape ``\\ud800``) is kept losslessly as that escape: everything outside ASCII is written
    as ``\\uXXXX``, which JSON readers, and Postgres's ``json`` columns, take back as it was."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_plain, separators=(",", ":")).encode()


def _plain(value: Any) -> str:
    """What orjson writes for the types it knows beyond JSON's own."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def loads(raw: bytes | str) -> Any:
    """Parse JSON; the non-standard ``NaN`` / ``Infinity`` literals some servers write are
    read as Python does."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
