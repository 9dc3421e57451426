"""Queries on interactions for the review queue, always within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, exists, func, select
from sqlalchemy.orm import Session

from app.models import Feedback, Interaction
from app.models.enums import FeedbackKind


@dataclass(frozen=True)
class InteractionFilter:
    agent_id: uuid.UUID | None = None
    adapter_version_id: uuid.UUID | None = None
    unrated: bool = False
    low_rating: bool = False
    has_correction: bool | None = None
    since: datetime | None = None
    until: datetime | None = None


class InteractionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, tenant_id: uuid.UUID, interaction_id: uuid.UUID) -> Interaction | None:
        return self.session.scalar(
            select(Interaction).where(
                Interaction.tenant_id == tenant_id, Interaction.id == interaction_id
            )
        )

    def search(
        self, tenant_id: uuid.UUID, where: InteractionFilter, limit: int, offset: int
    ) -> tuple[Sequence[Interaction], int]:
        """Newest first, with the total count of matches."""
        query = select(Interaction).where(Interaction.tenant_id == tenant_id)
        of_kind = lambda kind: exists().where(  # noqa: E731
            Feedback.tenant_id == tenant_id,
            Feedback.interaction_id == Interaction.id,
            Feedback.kind == kind,
        )
        if where.agent_id:
            query = query.where(Interaction.agent_id == where.agent_id)
        if where.adapter_version_id:
            query = query.where(Interaction.adapter_version_id == where.adapter_version_id)
        if where.unrated:
            query = query.where(~of_kind(FeedbackKind.rating))
        if where.low_rating:
            low = exists().where(
                Feedback.tenant_id == tenant_id,
                Feedback.interaction_id == Interaction.id,
                Feedback.kind == FeedbackKind.rating,
                Feedback.payload["rating"]["thumbs"].as_string() == "down",
            )
            low_score = exists().where(
                Feedback.tenant_id == tenant_id,
                Feedback.interaction_id == Interaction.id,
                Feedback.kind == FeedbackKind.rating,
                Feedback.payload["rating"]["score"].as_float() < 0,
            )
            query = query.where(low | low_score)
        if where.has_correction is not None:
            has = of_kind(FeedbackKind.correction)
            query = query.where(has if where.has_correction else ~has)
        if where.since:
            query = query.where(Interaction.created_at >= where.since)
        if where.until:
            query = query.where(Interaction.created_at < where.until)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(Interaction.created_at.desc()).limit(limit).offset(offset)
        ).all()
        return rows, int(total)

    def untouched(
        self, tenant_id: uuid.UUID, agent_id: uuid.UUID, limit: int
    ) -> Sequence[Interaction]:
        """The agent's newest answered interactions that no feedback touches (neither rated,
        corrected nor compared), with the engine's token ids: what a cycle must keep."""
        touched = exists().where(
            Feedback.tenant_id == tenant_id, Feedback.interaction_id == Interaction.id
        )
        rejected_in = exists().where(
            Feedback.tenant_id == tenant_id,
            Feedback.payload["preference"]["rejected_interaction_id"].as_string()
            == func.cast(Interaction.id, String),
        )
        return self.session.scalars(
            select(Interaction)
            .where(
                Interaction.tenant_id == tenant_id,
                Interaction.agent_id == agent_id,
                # `error` is JSON: a success stores JSON null, not SQL NULL; the logged
                # completion tokens tell an answered request apart.
                Interaction.completed_at.is_not(None),
                Interaction.completion_token_ids.is_not(None),
                Interaction.prompt_token_ids.is_not(None),
                ~touched,
                ~rejected_in,
            )
            .order_by(Interaction.created_at.desc())
            .limit(limit)
        ).all()
