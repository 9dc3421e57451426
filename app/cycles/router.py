"""Admin API: learning-cycle schedules, runs, and datasets."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from app.agents.service import get_agent
from app.cycles import service
from app.cycles.schemas import CycleRunOut, ScheduleUpdate
from app.datasets.service import export_examples, import_examples
from app.deps import AdminActor, CurrentActor, SessionDep
from app.models.enums import ExampleSplit

router = APIRouter(prefix="/api", tags=["admin"])


async def body_text(request: Request) -> str:
    """The request body as UTF-8 text, read before the handler runs in a worker thread."""
    return (await request.body()).decode("utf-8", errors="strict")


BodyText = Annotated[str, Depends(body_text)]


@router.get("/agents/{name}/schedule", response_model=ScheduleUpdate)
def read_schedule(name: str, actor: CurrentActor, session: SessionDep) -> Any:
    agent = get_agent(session, actor.tenant_id, name)
    return service.read_schedule(session, actor.tenant_id, agent.id)


@router.put("/agents/{name}/schedule", response_model=ScheduleUpdate)
def put_schedule(name: str, body: ScheduleUpdate, actor: AdminActor, session: SessionDep) -> Any:
    agent = get_agent(session, actor.tenant_id, name)
    return service.update_schedule(session, actor.tenant_id, agent.id, body)


@router.post("/agents/{name}/cycles", response_model=CycleRunOut, status_code=202)
def post_cycle(name: str, actor: AdminActor, session: SessionDep) -> CycleRunOut:
    """Start a cycle by hand (or get the one already queued or running)."""
    agent = get_agent(session, actor.tenant_id, name)
    run, _ = service.start_cycle(session, actor.tenant_id, agent.id, trigger="manual")
    return service.run_out(session, run)


@router.get("/cycles", response_model=list[CycleRunOut])
def list_cycles(
    actor: CurrentActor, session: SessionDep, agent: str | None = None
) -> list[CycleRunOut]:
    return service.list_runs(session, actor.tenant_id, agent)


@router.get("/cycles/{run_id}", response_model=CycleRunOut)
def read_cycle(run_id: uuid.UUID, actor: CurrentActor, session: SessionDep) -> CycleRunOut:
    return service.run_out(session, service.get_run(session, actor.tenant_id, run_id))


@router.get("/agents/{name}/dataset")
def export_dataset(
    name: str, actor: AdminActor, session: SessionDep, split: Literal["train", "eval"] | None = None
) -> StreamingResponse:
    agent = get_agent(session, actor.tenant_id, name)
    lines = list(
        export_examples(session, actor.tenant_id, agent.id, ExampleSplit(split) if split else None)
    )
    return StreamingResponse(
        iter(lines),
        media_type="application/jsonl",
        headers={"content-disposition": f'attachment; filename="{name}.jsonl"'},
    )


@router.post("/agents/{name}/dataset", status_code=201)
def import_dataset(
    name: str,
    actor: AdminActor,
    session: SessionDep,
    raw: BodyText,
    split: Literal["train", "eval"] = "train",
) -> dict[str, int]:
    """Import JSONL (the whole file is validated before anything is written)."""
    agent = get_agent(session, actor.tenant_id, name)
    return {
        "imported": import_examples(
            session, actor.tenant_id, agent.id, raw.splitlines(), ExampleSplit(split)
        )
    }
