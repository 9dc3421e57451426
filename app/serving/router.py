"""The OpenAI-compatible surface: thin handlers that authorise and call the serving layer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.deps import ServedTenant, ServingTenant, SessionDep, gateway_state
from app.serving.completions import CompletionHandler
from app.serving.handler import ChatCompletionHandler
from app.serving.models import model_card, model_cards
from app.serving.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
    ServedRequest,
)
from app.serving.responses import ResponsesRequest, history_of
from app.serving.responses_handler import ResponsesHandler, find_response
from app.tenants.service import ApiPrincipal

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, tenant: ServedTenant
) -> Response | StreamingResponse:
    """Serve the caller's agent (live or pinned version) on the shared engine."""
    return await _serve(ChatCompletionHandler, body, request, tenant)


@router.post("/completions", response_model=None)
async def completions(
    body: CompletionRequest, request: Request, tenant: ServedTenant
) -> Response | StreamingResponse:
    """Legacy text completions for the caller's agent, logged like a chat."""
    return await _serve(CompletionHandler, body, request, tenant)


@router.post("/responses", response_model=None)
async def create_response(
    body: ResponsesRequest, request: Request, tenant: ServedTenant
) -> Response | StreamingResponse:
    """The Responses API, served as a chat completion (logged as one, correctable as one);
    ``previous_response_id`` continues one of the tenant's logged responses."""
    history: list[dict[str, Any]] = []
    if body.previous_response_id:
        earlier = await find_response(
            tenant.tenant_id, body.previous_response_id, "previous_response_id"
        )
        history = history_of(earlier.request, earlier.output)
    return await _serve(ResponsesHandler, body.as_chat(history), request, tenant)


@router.get("/responses/{response_id}", response_model=None)
async def retrieve_response(response_id: str, tenant: ServingTenant) -> JSONResponse:
    """One of the tenant's logged responses; another tenant's or an unknown id is 404."""
    stored = await find_response(tenant.tenant_id, response_id, "response_id")
    return JSONResponse(stored.as_response())


async def _serve(
    handler_class: type[ChatCompletionHandler],
    body: ServedRequest,
    request: Request,
    tenant: ApiPrincipal,
) -> Response | StreamingResponse:
    """Route, hold a concurrency slot and answer (whole or streamed); the request was counted
    against the tenant's rate as it was authenticated (`ServedTenant`)."""
    state = gateway_state(request)
    generation = getattr(request.state, "serving_generation", None)
    route = state.cached_route(tenant, body.model, generation)
    if route is None:
        route = await run_in_threadpool(state.resolve, tenant, body.model, generation)
    handler = handler_class(state, tenant, route, getattr(request.state, "arrived", None))
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
