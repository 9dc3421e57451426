"""Admin API: agents, their adapter versions, promote and rollback."""

from __future__ import annotations

from fastapi import APIRouter

from app.agents import service
from app.agents.schemas import AgentIn, AgentOut, AgentPatch, PromoteIn, RollbackIn, VersionOut
from app.deps import AdminActor, CurrentActor, SessionDep

router = APIRouter(prefix="/api/agents", tags=["admin"])


@router.get("", response_model=list[AgentOut])
def list_agents(actor: CurrentActor, session: SessionDep) -> list[AgentOut]:
    return service.list_agents(session, actor.tenant_id)


@router.post("", response_model=AgentOut, status_code=201)
def post_agent(body: AgentIn, actor: AdminActor, session: SessionDep) -> AgentOut:
    agent = service.create_agent(session, actor.tenant_id, body)
    return service.agent_out(session, agent)


@router.patch("/{name}", response_model=AgentOut)
def patch_agent(name: str, body: AgentPatch, actor: AdminActor, session: SessionDep) -> AgentOut:
    """Change an agent's description, environment or default completion cap."""
    agent = service.get_agent(session, actor.tenant_id, name)
    service.update_agent(
        session,
        agent,
        description=body.description,
        environment=body.environment or None,
        clear_environment=body.environment == "",
        default_max_tokens=body.default_max_tokens,
        fine_tuning_promotes=body.fine_tuning_promotes,
    )
    return service.agent_out(session, agent)


@router.get("/{name}/versions", response_model=list[VersionOut])
def list_versions(name: str, actor: CurrentActor, session: SessionDep) -> list[VersionOut]:
    return service.list_versions(session, actor.tenant_id, actor.tenant_slug, name)


@router.post("/{name}/promote", response_model=AgentOut)
def post_promote(name: str, body: PromoteIn, actor: AdminActor, session: SessionDep) -> AgentOut:
    """Make a version live at once (also used to promote a rejected candidate by hand)."""
    return service.promote_version(
        session, actor.tenant_id, name, body.version, force=body.force, by=actor.email
    )


@router.post("/{name}/rollback", response_model=AgentOut)
def post_rollback(name: str, body: RollbackIn, actor: AdminActor, session: SessionDep) -> AgentOut:
    """Serve an earlier version again: the one given, or the previous live one."""
    return service.rollback_version(
        session, actor.tenant_id, name, body.version, force=body.force, by=actor.email
    )
