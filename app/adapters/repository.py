"""Queries on adapter versions, always within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import AdapterVersion, Agent
from app.models.enums import AdapterStatus


class AdapterVersionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        """Row-lock the agent so version numbers and the live pointer change one at a time."""
        query = (
            select(Agent)
            .where(Agent.tenant_id == tenant_id, Agent.id == agent_id)
            .with_for_update()
        )
        return self.session.scalar(query)

    def next_number(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> int:
        query = select(func.max(AdapterVersion.number)).where(
            AdapterVersion.tenant_id == tenant_id, AdapterVersion.agent_id == agent_id
        )
        return int(self.session.scalar(query) or 0) + 1

    def add(self, version: AdapterVersion) -> AdapterVersion:
        self.session.add(version)
        self.session.flush()
        return version

    def get(self, tenant_id: uuid.UUID, version_id: uuid.UUID) -> AdapterVersion | None:
        return self.session.scalar(
            select(AdapterVersion).where(
                AdapterVersion.tenant_id == tenant_id, AdapterVersion.id == version_id
            )
        )

    def get_by_number(
        self, tenant_id: uuid.UUID, agent_id: uuid.UUID, number: int
    ) -> AdapterVersion | None:
        return self.session.scalar(
            select(AdapterVersion).where(
                AdapterVersion.tenant_id == tenant_id,
                AdapterVersion.agent_id == agent_id,
                AdapterVersion.number == number,
            )
        )

    def list(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> list[AdapterVersion]:
        query = (
            select(AdapterVersion)
            .where(AdapterVersion.tenant_id == tenant_id, AdapterVersion.agent_id == agent_id)
            .order_by(AdapterVersion.number)
        )
        return list(self.session.scalars(query))

    def engine_names_with_status(self, statuses: Sequence[AdapterStatus]) -> Sequence[str]:
        """Across tenants: engine names of versions in these states (the retirement sweep)."""
        from app.models import Tenant

        rows = self.session.execute(
            select(Tenant.slug, Agent.name, AdapterVersion.number)
            .join(Agent, Agent.id == AdapterVersion.agent_id)
            .join(Tenant, Tenant.id == AdapterVersion.tenant_id)
            .where(AdapterVersion.status.in_(statuses))
        )
        return [f"{slug}/{agent}@v{number}" for slug, agent, number in rows]

    def with_status(self, status: AdapterStatus) -> Sequence[AdapterVersion]:
        """Across tenants: used only by the engine sync loop, which serves every tenant."""
        query = select(AdapterVersion).where(AdapterVersion.status == status)
        return list(self.session.scalars(query))
