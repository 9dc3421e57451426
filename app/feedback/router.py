"""`/v1/feedback`: the same feedback operations for agents (API key) as for operators."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.core.config import get_settings
from app.core.db import get_sessionmaker
from app.core.redis import get_redis
from app.deps import ServingTenant, SessionDep
from app.feedback.schemas import FeedbackCreate, FeedbackOut
from app.feedback.service import Author, create_feedback, get_feedback, to_out
from app.serving.limits import check_writes

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackOut, status_code=201)
async def post_feedback(
    body: FeedbackCreate, request: Request, tenant: ServingTenant, session: SessionDep
) -> JSONResponse:
    """Rate, correct or compare an interaction by its completion id (counts against the
    tenant's writes per minute)."""
    check_writes(get_redis(), tenant.tenant_id, get_settings().tenant_write_limit_per_minute)
    # Interactions reach Postgres through the write-behind buffer: flush it first, so
    # feedback sent right after the answer finds its interaction.
    state = request.app.state.gateway
    try:
        await run_in_threadpool(state.buffer.drain_all, get_sessionmaker())
    except Exception:  # noqa: BLE001 - a buffer outage must not refuse feedback
        log.warning("could not flush the interaction buffer before feedback", exc_info=True)
    author = Author(tenant_id=tenant.tenant_id, api_key_id=tenant.api_key_id)
    feedback, created = await run_in_threadpool(create_feedback, session, author, body)
    out = to_out(feedback).model_dump(mode="json")
    return JSONResponse(out, status_code=201 if created else 200)


@router.get("/feedback/{feedback_id}", response_model=FeedbackOut)
def read_feedback(feedback_id: str, tenant: ServingTenant, session: SessionDep) -> FeedbackOut:
    return to_out(get_feedback(session, tenant.tenant_id, feedback_id))
