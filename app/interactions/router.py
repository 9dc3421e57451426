"""Operator API: the review queue, one interaction with its feedback, and giving feedback."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query

from app.deps import CurrentActor, SessionDep
from app.feedback.schemas import FeedbackCreate, FeedbackOut
from app.feedback.service import Author, create_feedback, to_out
from app.interactions import service
from app.interactions.schemas import InteractionOut, InteractionPage

router = APIRouter(prefix="/api", tags=["operator"])


@router.get("/interactions", response_model=InteractionPage)
def list_interactions(
    actor: CurrentActor,
    session: SessionDep,
    agent: str | None = None,
    version: int | None = Query(default=None, ge=1, le=2**31 - 1),
    unrated: bool = False,
    low_rating: bool = False,
    has_correction: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(default=50, ge=1, le=200),
    offset: int = Query(default=0, ge=0, le=1_000_000),
) -> InteractionPage:
    return service.search(
        session,
        actor.tenant_id,
        agent=agent,
        version=version,
        unrated=unrated,
        low_rating=low_rating,
        has_correction=has_correction,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


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
