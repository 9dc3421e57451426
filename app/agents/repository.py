"""Queries on agents, always within one tenant."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Agent


class AgentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, agent: Agent) -> Agent:
        self.session.add(agent)
        self.session.flush()
        return agent

    def get(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        return self.session.scalar(
            select(Agent).where(Agent.tenant_id == tenant_id, Agent.id == agent_id)
        )

    def get_by_name(self, tenant_id: uuid.UUID, name: str) -> Agent | None:
        return self.session.scalar(
            select(Agent).where(Agent.tenant_id == tenant_id, Agent.name == name)
        )

    def list(self, tenant_id: uuid.UUID) -> list[Agent]:
        query = select(Agent).where(Agent.tenant_id == tenant_id).order_by(Agent.name)
        return list(self.session.scalars(query))
