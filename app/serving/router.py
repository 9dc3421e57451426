"""The OpenAI-compatible surface: thin handlers that authorise and call the serving layer."""

from __future__ import annotations

from fastapi import APIRouter

from app.agents.repository import AgentRepository
from app.deps import CurrentTenant, SessionDep
from app.serving.protocol import ModelCard, ModelList

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models", response_model=ModelList)
def list_models(tenant: CurrentTenant, session: SessionDep) -> ModelList:
    """The caller's agents (each serves its live adapter version)."""
    agents = AgentRepository(session).list(tenant.tenant_id)
    cards = [
        ModelCard(id=a.name, created=int(a.created_at.timestamp()), owned_by=tenant.tenant_slug)
        for a in agents
    ]
    return ModelList(data=cards)
