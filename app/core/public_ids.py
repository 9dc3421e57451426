"""Object ids as the OpenAI surface shows them: a prefix and the row's UUID in hex."""

from __future__ import annotations

import uuid

from app.core.errors import NotFound

JOB_PREFIX = "ftjob-"
"""A fine-tuning job's (files name the job that holds them, so the prefix lives here)."""


def job_public_id(job_id: uuid.UUID) -> str:
    return f"{JOB_PREFIX}{job_id.hex}"


def parse_public(public: str, prefix: str, what: str, param: str) -> uuid.UUID:
    """The row id of ``<prefix><hex>``; anything else names nothing of the caller's."""
    try:
        if not public.startswith(prefix):
            raise ValueError(public)
        return uuid.UUID(hex=public[len(prefix) :])
    except ValueError:
        raise NotFound(f"No such {what}: {public}", param=param) from None


def completion_id(interaction_id: uuid.UUID) -> str:
    """The id the agent receives, and later sends back with feedback."""
    return f"chatcmpl-{interaction_id.hex}"


ID_PREFIXES = ("chatcmpl-", "cmpl-", "resp_")
"""The id prefixes of the endpoints that log interactions (chat, text completions, responses)."""


def parse_completion_id(value: str) -> uuid.UUID | None:
    """The interaction id in any id the gateway handed out (``chatcmpl-``, ``cmpl-``, ``resp_``)."""
    if not isinstance(value, str):
        return None
    prefix = next((p for p in ID_PREFIXES if value.startswith(p)), None)
    if prefix is None:
        return None
    try:
        return uuid.UUID(hex=value.removeprefix(prefix))
    except ValueError:
        return None
