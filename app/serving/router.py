"""The OpenAI-compatible surface: thin handlers that authorise and call the serving layer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from app.adapters.service import adapter_name
from app.agents.service import list_with_versions
from app.deps import ServingTenant, SessionDep, gateway_state
from app.serving.handler import ChatCompletionHandler
from app.serving.protocol import ChatCompletionRequest, ModelCard, ModelList

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, tenant: ServingTenant
) -> JSONResponse | StreamingResponse:
    """Serve the caller's agent (live or pinned version) on the shared engine."""
    state = gateway_state(request)
    state.limits.check_rate(tenant.tenant_id)
    route = await run_in_threadpool(state.resolve, tenant, body.model)
    handler = ChatCompletionHandler(state, tenant, route)
    with state.limits.slot(tenant.tenant_id):
        if body.stream:
            return await handler.stream(body)
        return await handler.complete(body)


@router.get("/models", response_model=ModelList)
def list_models(tenant: ServingTenant, session: SessionDep) -> ModelList:
    """The caller's agents and every version of each (``agent@vN`` pins a version)."""
    cards: list[ModelCard] = []
    for agent, listed in list_with_versions(session, tenant.tenant_id):
        created = int(agent.created_at.timestamp())
        live = next((v for v in listed if v.id == agent.live_version_id), None)
        live_name = adapter_name(tenant.tenant_slug, agent.name, live.number) if live else None
        cards.append(
            ModelCard(
                id=agent.name, created=created, owned_by=tenant.tenant_slug, live_version=live_name
            )
        )
        for v in listed:
            cards.append(
                ModelCard(
                    id=f"{agent.name}@v{v.number}",
                    created=int(v.created_at.timestamp()),
                    owned_by=tenant.tenant_slug,
                )
            )
    return ModelList(data=cards)
