"""Queries on agents, always within one tenant."""

from __future__ import annotations

import uuid

from app.core.repository import TenantScopedRepository
from app.models import Agent


class AgentRepository(TenantScopedRepository[Agent]):
    model = Agent

    def get_by_name(self, tenant_id: uuid.UUID, name: str) -> Agent | None:
        return self.session.scalar(self.scoped(tenant_id).where(Agent.name == name))

    def list(self, tenant_id: uuid.UUID) -> list[Agent]:
        """Every agent of the tenant, by name."""
        return list(self.session.scalars(self.scoped(tenant_id).order_by(Agent.name)))
