"""The review queue: search the tenant's interactions, and read one with its feedback."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import redis
from sqlalchemy.orm import Session

from app.adapters.labels import Labels
from app.adapters.repository import AdapterVersionRepository
from app.agents.repository import AgentRepository
from app.core.errors import NotFound
from app.core.public_ids import completion_id, parse_completion_id
from app.feedback.repository import FeedbackRepository
from app.feedback.service import to_out as feedback_out
from app.interactions.buffer import DeadLetter, InteractionBuffer
from app.interactions.repository import InteractionFilter, InteractionRepository
from app.interactions.schemas import (
    DeadLetterOut,
    InteractionOut,
    InteractionPage,
    InteractionQuery,
)
from app.models import Interaction
from app.models.enums import FeedbackKind


def search(session: Session, tenant_id: uuid.UUID, query: InteractionQuery) -> InteractionPage:
    """One page of the tenant's interactions, newest first, and how many match in all."""
    agent, version = query.agent, query.version
    agent_id = None
    if agent:
        found = AgentRepository(session).get_by_name(tenant_id, agent)
        if found is None:
            raise NotFound(f"no agent {agent!r}", param="agent")
        agent_id = found.id
    version_id = None
    if version is not None:
        version_id = AdapterVersionRepository(session).first_numbered(tenant_id, version, agent_id)
        if version_id is None:
            raise NotFound(f"no version {version}", param="version")
    where = InteractionFilter(
        agent_id,
        version_id,
        query.unrated,
        query.low_rating,
        query.has_correction,
        query.since,
        query.until,
    )
    repository = InteractionRepository(session)
    rows, total = repository.search(tenant_id, where, query.limit, query.offset)
    items = _outs(session, tenant_id, rows)
    kinds = repository.feedback_kinds(tenant_id, [row.id for row in rows])
    for row, item in zip(rows, items, strict=True):
        item.feedback_kinds = _ordered(kinds.get(row.id, set()))
    return InteractionPage(total=total, items=items)


def read(session: Session, tenant_id: uuid.UUID, interaction_id: str) -> InteractionOut:
    """One of the tenant's interactions by its completion id, with its feedback."""
    parsed = parse_completion_id(interaction_id)
    row = InteractionRepository(session).get(tenant_id, parsed) if parsed else None
    if row is None:
        raise NotFound(f"no interaction {interaction_id!r}", param="interaction_id")
    out = _outs(session, tenant_id, [row])[0]
    feedback = FeedbackRepository(session).for_interaction(tenant_id, row.id)
    out.feedback = [feedback_out(f) for f in feedback]
    out.feedback_kinds = _ordered({f.kind for f in feedback})
    return out


def _ordered(kinds: set[FeedbackKind]) -> list[FeedbackKind]:
    return [kind for kind in FeedbackKind if kind in kinds]


def _outs(
    session: Session, tenant_id: uuid.UUID, rows: Sequence[Interaction]
) -> list[InteractionOut]:
    """The API view of interactions: agent names and version numbers in one query each."""
    labels = Labels.load(
        session, tenant_id, [r.agent_id for r in rows], [r.adapter_version_id for r in rows]
    )
    return [
        InteractionOut(
            id=completion_id(row.id),
            agent=labels.agent(row.agent_id),
            adapter_version=labels.version(row.adapter_version_id),
            created_at=row.created_at,
            request=row.request,
            output=row.output,
            usage=row.usage,
            latency_ms=row.latency_ms,
            finish_reason=row.finish_reason,
            error=row.error,
        )
        for row in rows
    ]


DEAD_LETTERS_SCANNED = 1000
"""The newest set-aside entries a listing reads (each tenant sees its own among them)."""


def dead_letter_out(entry: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        entry_id=entry.entry_id,
        at=entry.at,
        error=entry.error,
        interaction_id=completion_id(entry.interaction_id) if entry.interaction_id else None,
        record=entry.record,
    )


def dead_letters(
    client: redis.Redis, tenant_id: uuid.UUID | None, limit: int = 100
) -> list[DeadLetter]:
    """The newest records the database refused, of one tenant (None: every tenant's, and
    entries that are no record at all), newest first."""
    found = InteractionBuffer(client, "reader").dead_entries(DEAD_LETTERS_SCANNED)
    return [e for e in found if tenant_id is None or e.tenant_id == tenant_id][:limit]
