"""Agents: a tenant's adapter lineages."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy.orm import Session

from app.adapters import service as registry
from app.adapters.repository import AdapterVersionRepository
from app.adapters.signals import GateRecord, Signals
from app.agents.repository import AgentRepository
from app.agents.schemas import AgentIn, AgentOut, VersionOut
from app.core.config import get_settings
from app.core.errors import Conflict, InvalidRequest, NotFound
from app.core.jobs import enqueue
from app.models import AdapterVersion, Agent
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
    session: Session, tenant_id: uuid.UUID, spec: AgentIn, *, max_rank: int | None = None
) -> Agent:
    """A new agent of the tenant, checked against what the engine serves (``max_rank``: the
    engine's largest LoRA rank, `engine_max_lora_rank` by default)."""
    name, lora_rank, environment = spec.name, spec.lora_rank, spec.environment
    repo = AgentRepository(session)
    check_slug(name, "name")
    limit = max_rank or get_settings().engine_max_lora_rank
    if not 1 <= lora_rank <= limit:
        raise InvalidRequest(
            f"lora_rank must be between 1 and {limit}: the engine serves LoRA ranks up to "
            f"{limit} (CLORA_ENGINE_MAX_LORA_RANK)",
            param="lora_rank",
        )
    modules = list(spec.target_modules or sorted(ALLOWED_TARGET_MODULES))
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
        description=spec.description,
        lora_rank=lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_target_modules=modules,
        settings={"environment": environment, "default_max_tokens": spec.default_max_tokens},
    )
    return repo.add(agent)


def check_environment(environment: str | None) -> None:
    """Refuse an environment name nobody registered."""
    from app.training.client import environment_names

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
    fine_tuning_promotes: bool | None = None,
) -> Agent:
    """Change an agent's description, environment, default completion cap, or whether a
    fine-tuning job that passes the gate promotes its version."""
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
    if fine_tuning_promotes is not None:
        settings["fine_tuning_promotes"] = fine_tuning_promotes
    agent.settings = settings
    session.flush()
    return agent


def get_agent(session: Session, tenant_id: uuid.UUID, name: str) -> Agent:
    agent = AgentRepository(session).get_by_name(tenant_id, name)
    if agent is None:
        raise NotFound(f"the model {name!r} does not exist", param="model")
    return agent


def to_out(agent: Agent, numbers: Mapping[uuid.UUID, int]) -> AgentOut:
    """The API view of an agent; ``numbers`` holds its live version's number."""
    out = AgentOut.model_validate(agent, from_attributes=True)
    out.environment = (agent.settings or {}).get("environment")
    out.default_max_tokens = (agent.settings or {}).get("default_max_tokens")
    out.fine_tuning_promotes = bool((agent.settings or {}).get("fine_tuning_promotes", True))
    out.live_version = numbers.get(agent.live_version_id) if agent.live_version_id else None
    return out


def agent_out(session: Session, agent: Agent) -> AgentOut:
    """The API view of one agent."""
    versions = AdapterVersionRepository(session)
    return to_out(agent, versions.numbers(agent.tenant_id, [agent.live_version_id]))


def list_agents(session: Session, tenant_id: uuid.UUID) -> list[AgentOut]:
    """Every agent of the tenant by name (two queries, however many agents)."""
    agents = AgentRepository(session).list(tenant_id)
    versions = AdapterVersionRepository(session)
    numbers = versions.numbers(tenant_id, [a.live_version_id for a in agents])
    return [to_out(a, numbers) for a in agents]


def list_with_versions(
    session: Session, tenant_id: uuid.UUID
) -> list[tuple[Agent, list[AdapterVersion]]]:
    """Every agent of the tenant by name with its versions, oldest first (two queries)."""
    agents = AgentRepository(session).list(tenant_id)
    versions = AdapterVersionRepository(session).for_agents(tenant_id, [a.id for a in agents])
    return [(a, versions[a.id]) for a in agents]


def list_versions(
    session: Session, tenant_id: uuid.UUID, tenant_slug: str, name: str
) -> list[VersionOut]:
    """The agent's versions, oldest first, each with its engine name and parent's number."""
    agent = get_agent(session, tenant_id, name)
    versions = AdapterVersionRepository(session).list(tenant_id, agent.id)
    numbers = {v.id: v.number for v in versions}
    return [
        VersionOut(
            id=v.id,
            number=v.number,
            name=registry.adapter_name(tenant_slug, name, v.number),
            status=v.status,
            source=v.source,
            parent=numbers.get(v.parent_id) if v.parent_id else None,
            checksum=v.checksum,
            metrics=v.metrics,
            signals=Signals.read(v.metrics),
            gate=GateRecord.read(v.metrics),
            created_at=v.created_at,
        )
        for v in versions
    ]


def promote_version(
    session: Session, tenant_id: uuid.UUID, name: str, number: int, *, force: bool, by: str
) -> AgentOut:
    """Make version ``number`` of the agent live at once, and load it after commit."""
    agent = get_agent(session, tenant_id, name)
    version = AdapterVersionRepository(session).get_by_number(tenant_id, agent.id, number)
    if version is None:
        raise NotFound(f"{name} has no version {number}", param="version")
    registry.promote(session, tenant_id, version.id, force=force, by=by)
    enqueue(session, "adapter.load", str(tenant_id), str(version.id))
    return agent_out(session, agent)


def rollback_version(
    session: Session,
    tenant_id: uuid.UUID,
    name: str,
    number: int | None,
    *,
    force: bool = False,
    by: str | None = None,
) -> AgentOut:
    """Serve an earlier version again (the one given, or the previous live one) after commit;
    one the gate did not pass only with ``force``."""
    agent = get_agent(session, tenant_id, name)
    version = registry.rollback(session, tenant_id, agent.id, number, force=force, by=by)
    enqueue(session, "adapter.load", str(tenant_id), str(version.id))
    return agent_out(session, agent)
