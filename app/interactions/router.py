"""Operator API: the review queue, one interaction with its feedback, and giving feedback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.core.redis import get_redis
from app.deps import AdminActor, CurrentActor, SessionDep
from app.feedback.schemas import FeedbackCreate, FeedbackOut
from app.feedback.service import Author, create_feedback, to_out
from app.interactions import service
from app.interactions.schemas import (
    DeadLetterOut,
    InteractionOut,
    InteractionPage,
    InteractionQuery,
)

router = APIRouter(prefix="/api", tags=["operator"])


@router.get("/interactions", response_model=InteractionPage)
def list_interactions(
    actor: CurrentActor, session: SessionDep, query: Annotated[InteractionQuery, Query()]
) -> InteractionPage:
    return service.search(session, actor.tenant_id, query)


@router.get("/interactions/dead-letters", response_model=list[DeadLetterOut])
def list_dead_letters(
    actor: AdminActor, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeadLetterOut]:
    """The tenant's interaction records the database refused for good (newest first): set
    aside with the reason, so that the records behind them landed."""
    entries = service.dead_letters(get_redis(), actor.tenant_id, limit)
    return [service.dead_letter_out(e) for e in entries]


@router.get("/interactions/{interaction_id}", response_model=InteractionOut)
def read_interaction(
    interaction_id: str, actor: CurrentActor, session: SessionDep
) -> InteractionOut:
    return service.read(session, actor.tenant_id, interaction_id)


@router.post("/feedback", response_model=FeedbackOut, status_code=201)
def post_operator_feedback(
    body: FeedbackCreate, actor: CurrentActor, session: SessionDep
) -> FeedbackOut:
    """The same feedback operations agents have, authored by the signed-in operator."""
    feedback, _ = create_feedback(
        session, Author(tenant_id=actor.tenant_id, user_id=actor.user_id), body
    )
    return to_out(feedback)
