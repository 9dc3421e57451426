"""Queries on feedback, interactions and training examples, within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from app.core.repository import TenantScopedRepository
from app.models import Feedback, Interaction, TrainingExample
from app.models.enums import ExampleKind, FeedbackKind


class FeedbackRepository(TenantScopedRepository[Feedback]):
    model = Feedback

    def interaction(self, tenant_id: uuid.UUID, interaction_id: uuid.UUID) -> Interaction | None:
        return self.session.scalar(
            select(Interaction).where(
                Interaction.tenant_id == tenant_id, Interaction.id == interaction_id
            )
        )

    def by_idempotency_key(self, tenant_id: uuid.UUID, key: str) -> Feedback | None:
        return self.session.scalar(self.scoped(tenant_id).where(Feedback.idempotency_key == key))

    def insert_once(self, feedback: Feedback) -> bool:
        """Insert unless the tenant's idempotency key exists; True when inserted."""
        values = {c.name: getattr(feedback, c.key) for c in Feedback.__table__.columns}
        values = {k: v for k, v in values.items() if v is not None}
        stmt = insert(Feedback).values(values).on_conflict_do_nothing().returning(Feedback.id)
        return self.session.scalar(stmt) is not None

    def for_interaction(
        self, tenant_id: uuid.UUID, interaction_id: uuid.UUID
    ) -> Sequence[Feedback]:
        return self.session.scalars(
            self.scoped(tenant_id)
            .where(Feedback.interaction_id == interaction_id)
            .order_by(Feedback.created_at)
        ).all()

    def uncompiled_ids(self, limit: int = 500) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(tenant, feedback) pairs never compiled; used by the sweeper across tenants."""
        rows = self.session.execute(
            select(Feedback.tenant_id, Feedback.id)
            .where(Feedback.compiled_at.is_(None))
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    def mark_compiled(self, tenant_id: uuid.UUID, feedback_id: uuid.UUID) -> None:
        self.session.execute(
            update(Feedback)
            .where(Feedback.tenant_id == tenant_id, Feedback.id == feedback_id)
            .values(compiled_at=datetime.now(UTC))
        )

    def count_for_agent_since(
        self, tenant_id: uuid.UUID, agent_id: uuid.UUID, since: datetime | None
    ) -> int:
        query = (
            select(func.count())
            .select_from(Feedback)
            .join(Interaction, Interaction.id == Feedback.interaction_id)
            .where(Feedback.tenant_id == tenant_id, Interaction.agent_id == agent_id)
        )
        if since is not None:
            query = query.where(Feedback.created_at > since)
        return int(self.session.scalar(query) or 0)


class ExampleRepository(TenantScopedRepository[TrainingExample]):
    model = TrainingExample

    def insert_once(self, example: TrainingExample) -> bool:
        """One example per (feedback, kind): a re-delivered compile task adds nothing."""
        values = {c.name: getattr(example, c.key) for c in TrainingExample.__table__.columns}
        values = {k: v for k, v in values.items() if v is not None}
        stmt = (
            insert(TrainingExample)
            .values(values)
            .on_conflict_do_nothing()
            .returning(TrainingExample.id)
        )
        return self.session.scalar(stmt) is not None

    def supersede_corrections(self, tenant_id: uuid.UUID, keep: Feedback) -> int:
        """Latest correction wins, by when each was given (then id), whatever order they are
        compiled in: retire the examples of the interaction's corrections older than
        ``keep``, and ``keep``'s own when a newer correction exists."""
        others = select(Feedback.id, Feedback.created_at).where(
            Feedback.tenant_id == tenant_id,
            Feedback.interaction_id == keep.interaction_id,
            Feedback.kind == FeedbackKind.correction,
            Feedback.id != keep.id,
        )
        rank = (keep.created_at, str(keep.id))
        rows = self.session.execute(others).all()
        older = [fid for fid, at in rows if (at, str(fid)) < rank]
        newer = [fid for fid, at in rows if (at, str(fid)) > rank]
        retire = older + ([keep.id] if newer else [])
        if not retire:
            return 0
        result = self.session.execute(
            update(TrainingExample)
            .where(
                TrainingExample.tenant_id == tenant_id,
                TrainingExample.feedback_id.in_(retire),
                TrainingExample.superseded_at.is_(None),
            )
            .values(superseded_at=datetime.now(UTC))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def for_agent(
        self,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
        *,
        split: str | None = None,
        kinds: Sequence[ExampleKind] | None = None,
    ) -> Sequence[TrainingExample]:
        query = self.scoped(tenant_id).where(
            TrainingExample.agent_id == agent_id, TrainingExample.superseded_at.is_(None)
        )
        if split is not None:
            query = query.where(TrainingExample.split == split)
        if kinds:
            query = query.where(TrainingExample.kind.in_(kinds))
        return self.session.scalars(query.order_by(TrainingExample.created_at)).all()
