"""Admin API: agents, their adapter versions, promote and rollback."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.adapters import service as registry
from app.adapters.repository import AdapterVersionRepository
from app.agents.repository import AgentRepository
from app.agents.service import DEFAULT_MAX_TOKENS, create_agent, get_agent, update_agent
from app.auth.deps import AdminActor, CurrentActor
from app.core.jobs import enqueue
from app.deps import SessionDep

router = APIRouter(prefix="/api/agents", tags=["admin"])


class AgentIn(BaseModel):
    name: str = Field(max_length=63)
    description: str = Field(default="", max_length=2000)
    lora_rank: int = Field(default=16, ge=1, le=64)
    lora_alpha: int = Field(default=32, ge=1, le=1024)
    target_modules: list[str] | None = None
    environment: str | None = None
    """An RL environment whose held-out tasks the promotion gate plays (e.g. "calculator")."""
    default_max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=32_768)
    """Cap on a completion when a request sets neither max_tokens nor max_completion_tokens."""


class AgentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    environment: str | None = None
    """An environment name, or "" to remove the agent's environment."""
    default_max_tokens: int | None = Field(default=None, ge=1, le=32_768)


class AgentOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    lora_rank: int
    lora_alpha: int
    lora_target_modules: list[str]
    live_version: int | None = None
    environment: str | None = None
    default_max_tokens: int | None = None


class VersionOut(BaseModel):
    id: uuid.UUID
    number: int
    name: str
    status: str
    source: str
    parent: int | None
    checksum: str
    metrics: dict[str, Any]
    created_at: datetime


class PromoteIn(BaseModel):
    version: int = Field(ge=1)
    force: bool = False
    """Promote a version the gate did not pass (failed, or nothing to evaluate on); recorded."""


class RollbackIn(BaseModel):
    version: int | None = Field(default=None, ge=1)


def _agent_out(session: SessionDep, actor: CurrentActor, agent: Any) -> AgentOut:
    out = AgentOut.model_validate(agent, from_attributes=True)
    out.environment = (agent.settings or {}).get("environment")
    out.default_max_tokens = (agent.settings or {}).get("default_max_tokens")
    if agent.live_version_id:
        live = AdapterVersionRepository(session).get(actor.tenant_id, agent.live_version_id)
        out.live_version = live.number if live else None
    return out


@router.get("", response_model=list[AgentOut])
def list_agents(actor: CurrentActor, session: SessionDep) -> list[AgentOut]:
    return [_agent_out(session, actor, a) for a in AgentRepository(session).list(actor.tenant_id)]


@router.post("", response_model=AgentOut, status_code=201)
def post_agent(body: AgentIn, actor: AdminActor, session: SessionDep) -> AgentOut:
    agent = create_agent(
        session, actor.tenant_id, body.name, description=body.description,
        lora_rank=body.lora_rank, lora_alpha=body.lora_alpha, target_modules=body.target_modules,
        environment=body.environment, default_max_tokens=body.default_max_tokens,
    )  # fmt: skip
    return _agent_out(session, actor, agent)


@router.patch("/{name}", response_model=AgentOut)
def patch_agent(name: str, body: AgentPatch, actor: AdminActor, session: SessionDep) -> AgentOut:
    """Change an agent's description, environment or default completion cap."""
    agent = get_agent(session, actor.tenant_id, name)
    update_agent(
        session, agent, description=body.description,
        environment=body.environment or None, clear_environment=body.environment == "",
        default_max_tokens=body.default_max_tokens,
    )  # fmt: skip
    return _agent_out(session, actor, agent)


@router.get("/{name}/versions", response_model=list[VersionOut])
def list_versions(name: str, actor: CurrentActor, session: SessionDep) -> list[VersionOut]:
    agent = get_agent(session, actor.tenant_id, name)
    versions = AdapterVersionRepository(session).list(actor.tenant_id, agent.id)
    numbers = {v.id: v.number for v in versions}
    return [
        VersionOut(
            id=v.id,
            number=v.number,
            name=registry.adapter_name(actor.tenant_slug, name, v.number),
            status=v.status,
            source=v.source,
            parent=numbers.get(v.parent_id) if v.parent_id else None,
            checksum=v.checksum,
            metrics=v.metrics,
            created_at=v.created_at,
        )  # fmt: skip
        for v in versions
    ]


@router.post("/{name}/promote", response_model=AgentOut)
def post_promote(name: str, body: PromoteIn, actor: AdminActor, session: SessionDep) -> AgentOut:
    """Make a version live at once (also used to promote a rejected candidate by hand)."""
    agent = get_agent(session, actor.tenant_id, name)
    version = AdapterVersionRepository(session).get_by_number(
        actor.tenant_id, agent.id, body.version
    )
    if version is None:
        from app.core.errors import NotFound

        raise NotFound(f"{name} has no version {body.version}", param="version")
    registry.promote(session, actor.tenant_id, version.id, force=body.force, by=actor.email)
    enqueue(session, "adapter.load", str(actor.tenant_id), str(version.id))
    return _agent_out(session, actor, agent)


@router.post("/{name}/rollback", response_model=AgentOut)
def post_rollback(name: str, body: RollbackIn, actor: AdminActor, session: SessionDep) -> AgentOut:
    """Serve an earlier version again: the one given, or the previous live one."""
    agent = get_agent(session, actor.tenant_id, name)
    version = registry.rollback(session, actor.tenant_id, agent.id, body.version)
    enqueue(session, "adapter.load", str(actor.tenant_id), str(version.id))
    return _agent_out(session, actor, agent)
