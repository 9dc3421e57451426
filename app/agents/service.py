"""Agents: a tenant's adapter lineages."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.agents.repository import AgentRepository
from app.core.errors import Conflict, InvalidRequest, NotFound
from app.models import Agent
from app.tenants.service import check_slug

ALLOWED_TARGET_MODULES = {
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
}


def create_agent(
    session: Session,
    tenant_id: uuid.UUID,
    name: str,
    *,
    description: str = "",
    lora_rank: int = 16,
    lora_alpha: int = 32,
    target_modules: list[str] | None = None,
    max_rank: int = 64,
) -> Agent:
    repo = AgentRepository(session)
    check_slug(name, "name")
    if not 1 <= lora_rank <= max_rank:
        raise InvalidRequest(f"lora_rank must be between 1 and {max_rank}", param="lora_rank")
    modules = list(target_modules or sorted(ALLOWED_TARGET_MODULES))
    unknown = set(modules) - ALLOWED_TARGET_MODULES
    if unknown or not modules:
        raise InvalidRequest(
            f"target_modules must be a non-empty subset of {sorted(ALLOWED_TARGET_MODULES)}",
            param="target_modules",
        )
    if repo.get_by_name(tenant_id, name) is not None:
        raise Conflict(f"agent {name!r} already exists", param="name")
    agent = Agent(
        tenant_id=tenant_id,
        name=name,
        description=description,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_target_modules=modules,
    )
    return repo.add(agent)


def get_agent(session: Session, tenant_id: uuid.UUID, name: str) -> Agent:
    agent = AgentRepository(session).get_by_name(tenant_id, name)
    if agent is None:
        raise NotFound(f"the model {name!r} does not exist", param="model")
    return agent
