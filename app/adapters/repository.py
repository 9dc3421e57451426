"""Queries on adapter versions, always within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import func, select

from app.core.repository import TenantScopedRepository
from app.models import AdapterVersion, Agent
from app.models.enums import AdapterStatus


class AdapterVersionRepository(TenantScopedRepository[AdapterVersion]):
    model = AdapterVersion

    def lock_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        """Row-lock the agent so version numbers and the live pointer change one at a time."""
        query = (
            select(Agent)
            .where(Agent.tenant_id == tenant_id, Agent.id == agent_id)
            .with_for_update()
        )
        return self.session.scalar(query)

    def agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        """The agent whose lineage a version belongs to (the versions' side of the agents
        table: the agents domain builds on this one, not the other way)."""
        return self.session.scalar(
            select(Agent).where(Agent.tenant_id == tenant_id, Agent.id == agent_id)
        )

    def agent_named(self, tenant_id: uuid.UUID, name: str) -> Agent | None:
        return self.session.scalar(
            select(Agent).where(Agent.tenant_id == tenant_id, Agent.name == name)
        )

    def agent_names(
        self, tenant_id: uuid.UUID, agent_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        """The names of these agents of the tenant, in one query."""
        if not agent_ids:
            return {}
        rows = self.session.execute(
            select(Agent.id, Agent.name).where(
                Agent.tenant_id == tenant_id, Agent.id.in_(agent_ids)
            )
        )
        return {agent_id: name for agent_id, name in rows}

    def next_number(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> int:
        query = select(func.max(AdapterVersion.number)).where(
            AdapterVersion.tenant_id == tenant_id, AdapterVersion.agent_id == agent_id
        )
        return int(self.session.scalar(query) or 0) + 1

    def get_by_number(
        self, tenant_id: uuid.UUID, agent_id: uuid.UUID, number: int
    ) -> AdapterVersion | None:
        return self.session.scalar(
            self.scoped(tenant_id).where(
                AdapterVersion.agent_id == agent_id, AdapterVersion.number == number
            )
        )

    def for_agents(
        self, tenant_id: uuid.UUID, agent_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, list[AdapterVersion]]:
        """Each of these agents' versions, oldest first, in one query."""
        found: dict[uuid.UUID, list[AdapterVersion]] = {agent_id: [] for agent_id in agent_ids}
        if not found:
            return found
        query = (
            self.scoped(tenant_id)
            .where(AdapterVersion.agent_id.in_(list(found)))
            .order_by(AdapterVersion.agent_id, AdapterVersion.number)
        )
        for version in self.session.scalars(query):
            found[version.agent_id].append(version)
        return found

    def list(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> list[AdapterVersion]:
        """The agent's versions, oldest first."""
        query = (
            self.scoped(tenant_id)
            .where(AdapterVersion.agent_id == agent_id)
            .order_by(AdapterVersion.number)
        )
        return list(self.session.scalars(query))

    def numbers(
        self, tenant_id: uuid.UUID, version_ids: Collection[uuid.UUID | None]
    ) -> dict[uuid.UUID, int]:
        """The numbers of these versions of the tenant, in one query (None ids are skipped)."""
        wanted = {v for v in version_ids if v is not None}
        if not wanted:
            return {}
        rows = self.session.execute(
            self.scoped(tenant_id)
            .with_only_columns(AdapterVersion.id, AdapterVersion.number)
            .where(AdapterVersion.id.in_(wanted))
        )
        return {version_id: number for version_id, number in rows}

    def first_numbered(
        self, tenant_id: uuid.UUID, number: int, agent_id: uuid.UUID | None = None
    ) -> uuid.UUID | None:
        """The id of version ``number`` of the agent, or of the first agent by name that
        has one when no agent is given."""
        query = (
            self.scoped(tenant_id)
            .with_only_columns(AdapterVersion.id)
            .join(Agent, Agent.id == AdapterVersion.agent_id)
            .where(AdapterVersion.number == number)
            .order_by(Agent.name)
            .limit(1)
        )
        if agent_id is not None:
            query = query.where(AdapterVersion.agent_id == agent_id)
        return self.session.scalar(query)

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
