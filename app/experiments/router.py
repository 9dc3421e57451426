"""Admin API: RL experiments and the latest benchmark."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.auth.deps import AdminActor, CurrentActor
from app.core.config import REPO_ROOT
from app.core.errors import NotFound
from app.core.jobs import enqueue
from app.deps import SessionDep
from app.experiments import service
from app.experiments.repository import ExperimentRepository
from app.experiments.schemas import ExperimentConfig, ExperimentCreate, ExperimentOut

router = APIRouter(prefix="/api", tags=["admin"])
RESULTS = REPO_ROOT / "bench" / "results"


@router.get("/experiments", response_model=list[ExperimentOut])
def list_experiments(actor: CurrentActor, session: SessionDep) -> list[ExperimentOut]:
    rows = ExperimentRepository(session).list(actor.tenant_id)[:100]
    return [service.to_out(session, e) for e in rows]


@router.post("/experiments", response_model=ExperimentOut, status_code=202)
def post_experiment(
    body: ExperimentCreate, actor: AdminActor, session: SessionDep
) -> ExperimentOut:
    config = ExperimentConfig.model_validate(body.model_dump(exclude={"agent"}))
    experiment = service.create_experiment(session, actor.tenant_id, body.agent, config)
    enqueue(session, "experiment.run", str(actor.tenant_id), str(experiment.id))
    return service.to_out(session, experiment)


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
    return _result("experiments.json", "application/json")


@router.get(
    "/benchmarks/experiments.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The benchmark's plot."}},
)
def benchmark_plot(actor: CurrentActor) -> FileResponse:
    return _result("experiments.png", "image/png")


def _result(name: str, media_type: str) -> FileResponse:
    path = RESULTS / name
    if not path.is_file():
        raise NotFound("no benchmark has been run yet (clora bench experiments)")
    return FileResponse(path, media_type=media_type)
