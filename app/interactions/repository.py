"""Queries on interactions for the review queue, always within one tenant."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, String, exists, func, select

from app.core.repository import TenantScopedRepository
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


class InteractionRepository(TenantScopedRepository[Interaction]):
    model = Interaction

    def search(
        self, tenant_id: uuid.UUID, where: InteractionFilter, limit: int, offset: int
    ) -> tuple[Sequence[Interaction], int]:
        """Newest first, with the total count of matches."""
        return self.page(
            tenant_id,
            where=self._conditions(tenant_id, where),
            order_by=[Interaction.created_at.desc()],
            limit=limit,
            offset=offset,
        )

    def feedback_kinds(
        self, tenant_id: uuid.UUID, interaction_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, set[FeedbackKind]]:
        """The kinds of feedback on each of these interactions, in one query for a page."""
        if not interaction_ids:
            return {}
        rows = self.session.execute(
            select(Feedback.interaction_id, Feedback.kind)
            .where(Feedback.tenant_id == tenant_id, Feedback.interaction_id.in_(interaction_ids))
            .distinct()
        )
        kinds: dict[uuid.UUID, set[FeedbackKind]] = defaultdict(set)
        for interaction_id, kind in rows:
            kinds[interaction_id].add(FeedbackKind(kind))
        return kinds

    @staticmethod
    def _conditions(tenant_id: uuid.UUID, where: InteractionFilter) -> list[ColumnElement[bool]]:
        """The review queue's filter as SQL conditions on the tenant's interactions."""
        conditions: list[ColumnElement[bool]] = []
        of_kind = lambda kind: exists().where(  # noqa: E731
            Feedback.tenant_id == tenant_id,
            Feedback.interaction_id == Interaction.id,
            Feedback.kind == kind,
        )
        if where.agent_id:
            conditions.append(Interaction.agent_id == where.agent_id)
        if where.adapter_version_id:
            conditions.append(Interaction.adapter_version_id == where.adapter_version_id)
        if where.unrated:
            conditions.append(~of_kind(FeedbackKind.rating))
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
            conditions.append(low | low_score)
        if where.has_correction is not None:
            has = of_kind(FeedbackKind.correction)
            conditions.append(has if where.has_correction else ~has)
        if where.since:
            conditions.append(Interaction.created_at >= where.since)
        if where.until:
            conditions.append(Interaction.created_at < where.until)
        return conditions

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
            self.scoped(tenant_id)
            .where(
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
