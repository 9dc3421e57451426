"""Admin API: learning-cycle schedules, runs, and datasets."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.adapters.repository import AdapterVersionRepository
from app.agents.repository import AgentRepository
from app.agents.service import get_agent
from app.auth.deps import AdminActor, CurrentActor
from app.cycles import service
from app.cycles.repository import CycleRepository
from app.cycles.schemas import CycleRunOut, ScheduleUpdate
from app.datasets.service import export_examples, import_examples
from app.deps import SessionDep
from app.models import CycleRun
from app.models.enums import ExampleSplit

router = APIRouter(prefix="/api", tags=["admin"])


def run_out(session: SessionDep, run: CycleRun, agent_name: str) -> CycleRunOut:
    candidate = (
        AdapterVersionRepository(session).get(run.tenant_id, run.candidate_version_id)
        if run.candidate_version_id else None
    )  # fmt: skip
    return CycleRunOut(
        id=str(run.id), agent=agent_name, status=run.status, trigger=run.trigger,
        progress=run.progress, created_at=run.created_at, started_at=run.started_at,
        finished_at=run.finished_at, candidate_version=candidate.number if candidate else None,
        metrics=run.metrics or {}, error=run.error,
    )  # fmt: skip


@router.get("/agents/{name}/schedule", response_model=ScheduleUpdate)
def read_schedule(name: str, actor: CurrentActor, session: SessionDep) -> Any:
    agent = get_agent(session, actor.tenant_id, name)
    return ScheduleUpdate.model_validate(
        service.get_schedule(session, actor.tenant_id, agent.id), from_attributes=True
    )


@router.put("/agents/{name}/schedule", response_model=ScheduleUpdate)
def put_schedule(name: str, body: ScheduleUpdate, actor: AdminActor, session: SessionDep) -> Any:
    agent = get_agent(session, actor.tenant_id, name)
    schedule = service.update_schedule(session, actor.tenant_id, agent.id, body)
    return ScheduleUpdate.model_validate(schedule, from_attributes=True)


@router.post("/agents/{name}/cycles", response_model=CycleRunOut, status_code=202)
def post_cycle(name: str, actor: AdminActor, session: SessionDep) -> CycleRunOut:
    """Start a cycle by hand (or get the one already queued or running)."""
    agent = get_agent(session, actor.tenant_id, name)
    run, _ = service.start_cycle(session, actor.tenant_id, agent.id, trigger="manual")
    return run_out(session, run, agent.name)


@router.get("/cycles", response_model=list[CycleRunOut])
def list_cycles(
    actor: CurrentActor, session: SessionDep, agent: str | None = None
) -> list[CycleRunOut]:
    names = {a.id: a.name for a in AgentRepository(session).list(actor.tenant_id)}
    agent_id = get_agent(session, actor.tenant_id, agent).id if agent else None
    runs = CycleRepository(session).runs(actor.tenant_id, agent_id)
    return [run_out(session, r, names.get(r.agent_id, "?")) for r in runs[:200]]


@router.get("/cycles/{run_id}", response_model=CycleRunOut)
def read_cycle(run_id: uuid.UUID, actor: CurrentActor, session: SessionDep) -> CycleRunOut:
    run = service.get_run(session, actor.tenant_id, run_id)
    agent = AgentRepository(session).get(actor.tenant_id, run.agent_id)
    return run_out(session, run, agent.name if agent else "?")


@router.get("/agents/{name}/dataset")
def export_dataset(
    name: str, actor: AdminActor, session: SessionDep, split: Literal["train", "eval"] | None = None
) -> StreamingResponse:
    agent = get_agent(session, actor.tenant_id, name)
    lines = list(
        export_examples(session, actor.tenant_id, agent.id, ExampleSplit(split) if split else None)
    )
    return StreamingResponse(iter(lines), media_type="application/jsonl",
                             headers={"content-disposition": f'attachment; filename="{name}.jsonl"'})  # fmt: skip


@router.post("/agents/{name}/dataset", status_code=201)
async def import_dataset(
    name: str,
    request: Request,
    actor: AdminActor,
    session: SessionDep,
    split: Literal["train", "eval"] = "train",
) -> dict[str, int]:
    """Import JSONL (the whole file is validated before anything is written)."""
    raw = (await request.body()).decode("utf-8", errors="strict")
    agent = get_agent(session, actor.tenant_id, name)
    return {
        "imported": import_examples(
            session, actor.tenant_id, agent.id, raw.splitlines(), ExampleSplit(split)
        )
    }
