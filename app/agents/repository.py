"""Queries on agents, always within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from app.core.repository import TenantScopedRepository
from app.models import Agent


class AgentRepository(TenantScopedRepository[Agent]):
    model = Agent

    def get_by_name(self, tenant_id: uuid.UUID, name: str) -> Agent | None:
        return self.session.scalar(self.scoped(tenant_id).where(Agent.name == name))

    def list(self, tenant_id: uuid.UUID) -> list[Agent]:
        """Every agent of the tenant, by name."""
        return list(self.session.scalars(self.scoped(tenant_id).order_by(Agent.name)))

    def names(self, tenant_id: uuid.UUID, agent_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The names of these agents of the tenant, in one query."""
        if not agent_ids:
            return {}
        rows = self.session.execute(
            self.scoped(tenant_id)
            .with_only_columns(Agent.id, Agent.name)
            .where(Agent.id.in_(agent_ids))
        )
        return {agent_id: name for agent_id, name in rows}
