"""Agents: a tenant's adapter lineages."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.agents.repository import AgentRepository
from app.core.errors import Conflict, InvalidRequest, NotFound
from app.models import Agent
from app.tenants.service import check_slug

DEFAULT_MAX_TOKENS = 256
"""A new agent's cap on a completion when a request sets none: a tiny model asked for an
unbounded answer would otherwise run to the context limit."""

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
    environment: str | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
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
    check_environment(environment)
    agent = Agent(
        tenant_id=tenant_id,
        name=name,
        description=description,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_target_modules=modules,
        settings={"environment": environment, "default_max_tokens": default_max_tokens},
    )
    return repo.add(agent)


def check_environment(environment: str | None) -> None:
    """Refuse an environment name nobody registered."""
    from app.trainer_client import environment_names

    if environment is not None and environment not in environment_names():
        raise InvalidRequest(
            f"unknown environment {environment!r}; known: {environment_names()}",
            param="environment",
        )


def update_agent(
    session: Session,
    agent: Agent,
    *,
    description: str | None = None,
    environment: str | None = None,
    clear_environment: bool = False,
    default_max_tokens: int | None = None,
) -> Agent:
    """Change an agent's description, environment or default completion cap."""
    settings = dict(agent.settings or {})
    if description is not None:
        agent.description = description
    if clear_environment:
        settings["environment"] = None
    elif environment is not None:
        check_environment(environment)
        settings["environment"] = environment
    if default_max_tokens is not None:
        settings["default_max_tokens"] = default_max_tokens
    agent.settings = settings
    session.flush()
    return agent


def get_agent(session: Session, tenant_id: uuid.UUID, name: str) -> Agent:
    agent = AgentRepository(session).get_by_name(tenant_id, name)
    if agent is None:
        raise NotFound(f"the model {name!r} does not exist", param="model")
    return agent
