"""Operator API: the review queue, one interaction with its feedback, and giving feedback."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from app.adapters.repository import AdapterVersionRepository
from app.agents.repository import AgentRepository
from app.auth.deps import CurrentActor
from app.core.errors import NotFound
from app.deps import SessionDep
from app.feedback.repository import FeedbackRepository
from app.feedback.schemas import FeedbackCreate, FeedbackOut
from app.feedback.service import Author, create_feedback, to_out
from app.interactions.repository import InteractionFilter, InteractionRepository
from app.serving.serving import completion_id, parse_completion_id

router = APIRouter(prefix="/api", tags=["operator"])


class InteractionOut(BaseModel):
    id: str
    agent: str
    adapter_version: int | None
    created_at: datetime
    request: dict[str, Any]
    output: dict[str, Any] | None
    usage: dict[str, Any] | None
    latency_ms: float | None
    finish_reason: str | None
    error: dict[str, Any] | None
    feedback: list[FeedbackOut] = []


class InteractionPage(BaseModel):
    total: int
    items: list[InteractionOut]


def _out(
    session: SessionDep, tenant_id: uuid.UUID, row: Any, names: dict, numbers: dict
) -> InteractionOut:
    return InteractionOut(
        id=completion_id(row.id), agent=names.get(row.agent_id, "?"),
        adapter_version=numbers.get(row.adapter_version_id), created_at=row.created_at,
        request=row.request, output=row.output, usage=row.usage, latency_ms=row.latency_ms,
        finish_reason=row.finish_reason, error=row.error,
    )  # fmt: skip


def _lookups(session: SessionDep, tenant_id: uuid.UUID) -> tuple[dict, dict]:
    agents = AgentRepository(session).list(tenant_id)
    versions = AdapterVersionRepository(session)
    numbers = {v.id: v.number for a in agents for v in versions.list(tenant_id, a.id)}
    return {a.id: a.name for a in agents}, numbers


@router.get("/interactions", response_model=InteractionPage)
def list_interactions(
    actor: CurrentActor,
    session: SessionDep,
    agent: str | None = None,
    version: int | None = Query(default=None, ge=1),
    unrated: bool = False,
    low_rating: bool = False,
    has_correction: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(default=50, ge=1, le=200),
    offset: int = Query(default=0, ge=0, le=1_000_000),
) -> InteractionPage:
    names, numbers = _lookups(session, actor.tenant_id)
    agent_id = next((i for i, n in names.items() if n == agent), None) if agent else None
    if agent and agent_id is None:
        raise NotFound(f"no agent {agent!r}", param="agent")
    version_id = None
    if version is not None:
        version_id = next((i for i, n in numbers.items() if n == version), None)
        if version_id is None:
            raise NotFound(f"no version {version}", param="version")
    where = InteractionFilter(
        agent_id, version_id, unrated, low_rating, has_correction, since, until
    )
    rows, total = InteractionRepository(session).search(actor.tenant_id, where, limit, offset)
    return InteractionPage(
        total=total, items=[_out(session, actor.tenant_id, r, names, numbers) for r in rows]
    )


@router.get("/interactions/{interaction_id}", response_model=InteractionOut)
def read_interaction(
    interaction_id: str, actor: CurrentActor, session: SessionDep
) -> InteractionOut:
    parsed = parse_completion_id(interaction_id)
    row = InteractionRepository(session).get(actor.tenant_id, parsed) if parsed else None
    if row is None:
        raise NotFound(f"no interaction {interaction_id!r}", param="interaction_id")
    names, numbers = _lookups(session, actor.tenant_id)
    out = _out(session, actor.tenant_id, row, names, numbers)
    out.feedback = [
        to_out(f) for f in FeedbackRepository(session).for_interaction(actor.tenant_id, row.id)
    ]
    return out


@router.post("/feedback", response_model=FeedbackOut, status_code=201)
def post_operator_feedback(
    body: FeedbackCreate, actor: CurrentActor, session: SessionDep
) -> FeedbackOut:
    """The same feedback operations agents have, authored by the signed-in operator."""
    feedback, _ = create_feedback(
        session, Author(tenant_id=actor.tenant_id, user_id=actor.user_id), body
    )
    return to_out(feedback)
