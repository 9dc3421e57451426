"""The OpenAI-compatible surface: thin handlers that authorise and call the serving layer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from app.deps import ServingTenant, SessionDep, gateway_state
from app.serving.handler import ChatCompletionHandler
from app.serving.models import model_card, model_cards
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
    slot = state.limits.acquire(tenant.tenant_id)
    if not body.stream:
        try:
            return await handler.complete(body)
        finally:
            slot.release()
    try:
        # The response gives the slot back when the stream ends or the client leaves.
        return await handler.stream(body, slot)
    except BaseException:
        slot.release()
        raise


@router.get("/models", response_model=ModelList)
def list_models(tenant: ServingTenant, session: SessionDep) -> ModelList:
    """The caller's agents and every version of each (``agent@vN`` pins a version)."""
    return ModelList(data=model_cards(session, tenant))


@router.get("/models/{model_id}", response_model=ModelCard)
def retrieve_model(model_id: str, tenant: ServingTenant, session: SessionDep) -> ModelCard:
    """One of the caller's models, by an id ``/v1/models`` lists; another tenant's is 404."""
    return model_card(session, tenant, model_id)
