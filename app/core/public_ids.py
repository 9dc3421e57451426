"""Object ids as the OpenAI surface shows them: a prefix and the row's UUID in hex."""

from __future__ import annotations

import uuid

from app.core.errors import NotFound


def parse_public(public: str, prefix: str, what: str, param: str) -> uuid.UUID:
    """The row id of ``<prefix><hex>``; anything else names nothing of the caller's."""
    try:
        if not public.startswith(prefix):
            raise ValueError(public)
        return uuid.UUID(hex=public[len(prefix) :])
    except ValueError:
        raise NotFound(f"No such {what}: {public}", param=param) from None
