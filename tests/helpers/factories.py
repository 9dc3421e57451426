"""Small builders for test data; they flush, the test's transaction rolls back."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.agents.schemas import AgentIn
from app.agents.service import create_agent
from app.models import Agent, Interaction, Tenant
from app.tenants.service import create_api_key, create_tenant


def tenant(session: Session, slug: str | None = None) -> Tenant:
    return create_tenant(session, slug or f"t-{uuid.uuid4().hex[:8]}")


def agent(session: Session, owner: Tenant, name: str = "assistant") -> Agent:
    return create_agent(session, owner.id, AgentIn(name=name))


def api_key(session: Session, owner: Tenant) -> str:
    return create_api_key(session, owner.id, "test")[1]


def interaction(session: Session, owner: Tenant, on: Agent, text: str = "hi") -> Interaction:
    row = Interaction(
        tenant_id=owner.id,
        agent_id=on.id,
        request={"messages": [{"role": "user", "content": text}]},
        output={"role": "assistant", "content": "hello"},
    )
    session.add(row)
    session.flush()
    return row
