"""`/v1/fine_tuning/jobs`: OpenAI's fine-tuning API on the tenant's agents (API key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from app.core.errors import NotFound
from app.deps import ServingTenant, SessionDep
from app.fine_tuning import service
from app.fine_tuning.protocol import CheckpointList, EventList, JobCreate, JobList, JobOut

router = APIRouter(prefix="/v1/fine_tuning", tags=["fine-tuning"])

Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("/jobs", response_model=JobOut)
async def create_job(body: JobCreate, tenant: ServingTenant, session: SessionDep) -> JobOut:
    """Train a new version of one of the tenant's agents on an uploaded file."""

    def create() -> JobOut:
        return service.job_out(session, tenant, service.create_job(session, tenant, body))

    return await run_in_threadpool(create)


@router.get("/jobs", response_model=JobList)
def list_jobs(
    request: Request,
    tenant: ServingTenant,
    session: SessionDep,
    after: str | None = None,
    limit: Limit = 20,
) -> JobList:
    """Newest first; ``metadata[key]=value`` keeps only jobs with that pair."""
    metadata = {
        k[len("metadata[") : -1]: v
        for k, v in request.query_params.items()
        if k.startswith("metadata[") and k.endswith("]")
    }
    data, more = service.page_jobs(session, tenant, after=after, limit=limit, metadata=metadata)
    return JobList(data=data, has_more=more)


@router.get("/jobs/{job_id}", response_model=JobOut)
def retrieve_job(job_id: str, tenant: ServingTenant, session: SessionDep) -> JobOut:
    return service.job_out(session, tenant, service.get_job(session, tenant.tenant_id, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, tenant: ServingTenant, session: SessionDep) -> JobOut:
    """Cancel a queued or running job (409 for one that has finished)."""
    return service.job_out(session, tenant, service.cancel(session, tenant, job_id))


@router.get("/jobs/{job_id}/events", response_model=EventList)
def job_events(
    job_id: str,
    tenant: ServingTenant,
    session: SessionDep,
    after: str | None = None,
    limit: Limit = 20,
) -> EventList:
    data, more = service.events(session, tenant.tenant_id, job_id, after=after, limit=limit)
    return EventList(data=data, has_more=more)


@router.get("/jobs/{job_id}/checkpoints", response_model=CheckpointList)
def job_checkpoints(
    job_id: str,
    tenant: ServingTenant,
    session: SessionDep,
    after: str | None = None,
    limit: Limit = 10,
) -> CheckpointList:
    """The versions the job produced, with their metrics (one: its candidate)."""
    data = service.checkpoints(session, tenant, job_id)
    if after:
        ids = [c.id for c in data]
        if after not in ids:
            raise NotFound(f"No such checkpoint of this job: {after}", param="after")
        data = data[ids.index(after) + 1 :]
    more = len(data) > limit
    data = data[:limit]
    return CheckpointList(
        data=data,
        has_more=more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
