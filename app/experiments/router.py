"""Admin API: RL experiments and the latest benchmark."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.deps import AdminActor, CurrentActor, SessionDep
from app.experiments import service
from app.experiments.schemas import ExperimentCreate, ExperimentOut

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/experiments", response_model=list[ExperimentOut])
def list_experiments(actor: CurrentActor, session: SessionDep) -> list[ExperimentOut]:
    return service.list_experiments(session, actor.tenant_id)


@router.post("/experiments", response_model=ExperimentOut, status_code=202)
def post_experiment(
    body: ExperimentCreate, actor: AdminActor, session: SessionDep
) -> ExperimentOut:
    return service.start_experiment(session, actor.tenant_id, body)


@router.get("/experiments/{experiment_id}", response_model=ExperimentOut)
def read_experiment(
    experiment_id: uuid.UUID, actor: CurrentActor, session: SessionDep
) -> ExperimentOut:
    return service.to_out(session, service.get_experiment(session, actor.tenant_id, experiment_id))


@router.post("/experiments/{experiment_id}/cancel", response_model=ExperimentOut)
def cancel(experiment_id: uuid.UUID, actor: AdminActor, session: SessionDep) -> ExperimentOut:
    return service.to_out(
        session, service.cancel_experiment(session, actor.tenant_id, experiment_id)
    )


@router.get("/benchmarks/experiments")
def benchmark_json(actor: CurrentActor) -> FileResponse:
    """The latest `clora bench experiments` results (shared by every tenant: no tenant data)."""
    return FileResponse(service.benchmark_result("experiments.json"), media_type="application/json")


@router.get(
    "/benchmarks/experiments.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The benchmark's plot."}},
)
def benchmark_plot(actor: CurrentActor) -> FileResponse:
    return FileResponse(service.benchmark_result("experiments.png"), media_type="image/png")
