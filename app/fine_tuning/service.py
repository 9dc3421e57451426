"""Fine-tuning jobs: create (files checked, "auto" resolved), list, retrieve, cancel, events,
checkpoints. A job is a learning cycle of its agent (`app.fine_tuning.cycle` plans it), so it
trains on the shared trainer, meets the same gate and publishes a version of the agent."""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from app.adapters.labels import Labels
from app.adapters.repository import AdapterVersionRepository
from app.adapters.service import resolve
from app.core.config import get_settings
from app.core.errors import Conflict, InvalidRequest, RateLimited
from app.core.public_ids import JOB_PREFIX, job_public_id, parse_public
from app.cycles.service import start_cycle
from app.files import service as files
from app.files.protocol import public_id as file_public_id
from app.fine_tuning.protocol import (
    CHECKPOINT_PREFIX,
    EVENT_PREFIX,
    CheckpointOut,
    EventOut,
    JobCreate,
    JobError,
    JobOut,
    Method,
)
from app.fine_tuning.repository import EventRepository, FineTuningRepository
from app.models import CycleRun, FineTuningEvent, FineTuningJob, Tenant
from app.models.enums import ACTIVE_RUN_STATUSES, RunStatus
from app.tenants.service import ApiPrincipal
from app.training.client import environment_names

FILE_FORMAT = {"supervised": "chat", "dpo": "preference", "reinforcement": "reinforcement"}
"""The line format each method trains on."""
AUTO_BATCH = 8
AUTO_MIN_STEPS = 30
"""With "auto" epochs, enough epochs for at least this many steps (a tiny file on the bundled
model learns in 20 to 40 steps at the schedule's learning rate), and never under 3."""
MAX_STEPS = 2_000

_STATUS = {
    RunStatus.queued: "queued",
    RunStatus.running: "running",
    RunStatus.succeeded: "succeeded",
    RunStatus.rejected: "failed",
    RunStatus.needs_evaluation: "failed",
    RunStatus.failed: "failed",
    RunStatus.cancelled: "cancelled",
}


class InvalidTrainingFile(InvalidRequest):
    code = "invalid_training_file"


def record_event(
    session: Session,
    job: FineTuningJob,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> None:
    """Append a line to the job's event log."""
    EventRepository(session).add(
        FineTuningEvent(
            tenant_id=job.tenant_id,
            job_id=job.id,
            level=level,
            type=type,
            message=message[:2000],
            data=data,
        )
    )


def _resolved(method: Method, lines: int, seed: int) -> dict[str, Any]:
    """The method with every "auto" hyperparameter chosen from the file's size."""
    kind = method.type
    own = getattr(method, kind)
    hp = own.hyperparameters.model_dump() if own else {}
    batch = hp.get("batch_size", "auto")
    if batch == "auto":  # 8, or as many as keep 3 epochs within MAX_STEPS
        batch = min(max(AUTO_BATCH, math.ceil(lines / (MAX_STEPS // 3))), lines)
    else:
        batch = min(int(batch), lines)
    per_epoch = math.ceil(lines / batch)
    epochs = hp.get("n_epochs", "auto")
    if epochs == "auto":
        epochs = min(50, max(3, math.ceil(AUTO_MIN_STEPS / per_epoch)))
    if per_epoch * int(epochs) > MAX_STEPS:
        raise InvalidRequest(
            f"{per_epoch * int(epochs)} steps ({epochs} epochs of {per_epoch} batches of "
            f"{batch}); at most {MAX_STEPS}: raise batch_size or lower n_epochs",
            param="method",
        )
    lr = hp.get("learning_rate_multiplier", "auto")
    resolved: dict[str, Any] = {
        "n_epochs": int(epochs),
        "batch_size": int(batch),
        "learning_rate_multiplier": 1.0 if lr == "auto" else float(lr),
    }
    if kind == "dpo":
        beta = hp.get("beta", "auto")
        resolved["beta"] = 0.1 if beta == "auto" else float(beta)
    out: dict[str, Any] = {"type": kind, kind: {"hyperparameters": resolved}}
    if kind == "reinforcement":
        compute = hp.get("compute_multiplier", "auto")
        resolved["compute_multiplier"] = 1.0 if compute == "auto" else float(compute)
        assert method.reinforcement is not None
        out[kind]["grader"] = method.reinforcement.grader.model_dump()
    return out


def _check_file(session: Session, tenant_id: uuid.UUID, public: str, param: str, fmt: str) -> Any:
    row = files.get(session, tenant_id, public, param=param)
    session.refresh(row, with_for_update=True)  # a delete waits for this job to be kept
    if row.format != fmt:
        raise InvalidTrainingFile(
            f"{param} {public} holds {row.format} lines; this method trains on {fmt} lines",
            param=param,
        )
    return row


def create_job(session: Session, tenant: ApiPrincipal, body: JobCreate) -> FineTuningJob:
    """Check the model, files and method; keep the job and start its cycle when the agent is
    free (else it waits, and starts when the agent's running cycle ends)."""
    route = resolve(session, tenant.tenant_id, tenant.tenant_slug, body.model)
    method = body.method or Method(
        type="supervised",
        supervised={"hyperparameters": (body.hyperparameters or {})},  # type: ignore[arg-type]
    )
    if method.type == "reinforcement":
        assert method.reinforcement is not None
        grader = method.reinforcement.grader
        if grader.type == "environment" and grader.name not in environment_names():
            raise InvalidRequest(
                f"no environment '{grader.name}'; known: {environment_names()}",
                param="method.reinforcement.grader.name",
            )
    fmt = FILE_FORMAT[method.type]
    training = _check_file(session, tenant.tenant_id, body.training_file, "training_file", fmt)
    validation = (
        _check_file(session, tenant.tenant_id, body.validation_file, "validation_file", fmt)
        if body.validation_file
        else None
    )
    if method.type == "reinforcement" and method.reinforcement.grader.type == "environment":  # type: ignore[union-attr]
        for param, row in (("training_file", training), ("validation_file", validation)):
            if row is None:
                continue
            _, lines = files.payloads(session, tenant.tenant_id, row.id)
            missing = next((i for i, p in enumerate(lines, 1) if "answer" not in p["item"]), None)
            if missing is not None:
                raise InvalidTrainingFile(
                    f"{param}: example {missing} has no 'answer' field, which the environment "
                    "grader rewards the final answer against",
                    param=param,
                )
    _within_job_quota(session, tenant.tenant_id)
    seed = body.seed if body.seed is not None else random.randrange(2**31)
    job = FineTuningRepository(session).add(
        FineTuningJob(
            id=uuid.uuid4(),
            tenant_id=tenant.tenant_id,
            agent_id=route.agent_id,
            model=body.model,
            base_version_id=route.version_id if "@" in body.model else None,
            method=_resolved(method, training.lines, seed),
            training_file_id=training.id,
            validation_file_id=validation.id if validation else None,
            suffix=body.suffix,
            seed=seed,
            job_metadata=body.metadata,
        )
    )
    record_event(session, job, f"Created fine-tuning job: {job_public_id(job.id)}")
    record_event(
        session,
        job,
        f"Validated {training.lines} {fmt} lines of {file_public_id(training.id)}"
        + (f" and {validation.lines} of {file_public_id(validation.id)}" if validation else ""),
    )
    start(session, job)
    return job


def start(session: Session, job: FineTuningJob) -> bool:
    """Queue the job's cycle unless its agent has one queued or running (then it waits)."""
    session.refresh(job, with_for_update=True)  # a cancel of a waiting job waits for this
    if job.cancelled_at is not None or job.cycle_run_id is not None:
        return False
    run, created = start_cycle(session, job.tenant_id, job.agent_id, trigger="fine_tuning")
    if not created:
        if not any(e.message.startswith("Waiting") for e in _events(session, job, limit=3)):
            record_event(
                session,
                job,
                "Waiting for the agent's learning cycle in progress to finish",
            )
        return False
    job.cycle_run_id = run.id
    session.flush()
    record_event(session, job, "Files validated, moving job to queued state")
    return True


def start_waiting(session: Session, agent_id: uuid.UUID | None = None) -> int:
    """Start the oldest waiting job of each free agent (all agents, or one); how many."""
    started = 0
    seen: set[uuid.UUID] = set()
    for job in FineTuningRepository(session).waiting(agent_id):
        if job.agent_id in seen:
            continue
        seen.add(job.agent_id)
        started += int(start(session, job))
    return started


def _events(session: Session, job: FineTuningJob, limit: int) -> list[FineTuningEvent]:
    rows, _ = EventRepository(session).cursor_page(
        job.tenant_id, where=[FineTuningEvent.job_id == job.id], after=None, limit=limit
    )
    return rows


def get_job(session: Session, tenant_id: uuid.UUID, public: str) -> FineTuningJob:
    job_id = parse_public(public, JOB_PREFIX, "fine-tuning job", "fine_tuning_job_id")
    return FineTuningRepository(session).get_or_404(
        tenant_id, job_id, what=f"fine-tuning job: {public}", param="fine_tuning_job_id"
    )


def _within_job_quota(session: Session, tenant_id: uuid.UUID) -> None:
    """Refuse a job past the tenant's jobs queued or running at once (429); the tenant's row
    is locked first, so concurrent creates are counted one after another."""
    session.get(Tenant, tenant_id, with_for_update=True)
    limit = get_settings().tenant_max_active_jobs
    active = FineTuningRepository(session).active_count(tenant_id)
    if active >= limit:
        raise RateLimited(
            f"the tenant has {active} fine-tuning jobs queued or running, its limit "
            "(CLORA_TENANT_MAX_ACTIVE_JOBS); wait for one to end or cancel one",
            retry_after_s=30.0,
        )


def status_of(job: FineTuningJob, run: CycleRun | None) -> str:
    if job.cancelled_at is not None:
        return "cancelled"
    if run is None:
        return "queued"
    return _STATUS[RunStatus(run.status)]


def _error(run: CycleRun | None) -> JobError | None:
    if run is None:
        return None
    metrics = run.metrics or {}
    if run.status == RunStatus.rejected and run.candidate_version_id is None:
        return JobError(code="training_failed", message=str(metrics.get("decision")))
    if run.status == RunStatus.rejected:
        return JobError(
            code="evaluation_failed",
            message=f"The candidate failed the evaluation gate: {metrics.get('decision')}",
            param=metrics.get("failed_signal"),
        )
    if run.status == RunStatus.needs_evaluation:
        return JobError(
            code="needs_evaluation",
            message=f"{metrics.get('decision')} Give the job a validation_file.",
            param="validation_file",
        )
    if run.status == RunStatus.failed:
        return JobError(code="training_failed", message=run.error or "the job failed")
    return None


def jobs_out(session: Session, tenant: ApiPrincipal, jobs: list[FineTuningJob]) -> list[JobOut]:
    """The API view of the tenant's jobs (runs and version numbers in one query each)."""
    runs = FineTuningRepository(session).runs_of(jobs)
    labels = Labels.load(
        session,
        tenant.tenant_id,
        [j.agent_id for j in jobs],
        [r.candidate_version_id for r in runs.values()],
    )
    out: list[JobOut] = []
    for job in jobs:
        run = runs.get(job.cycle_run_id) if job.cycle_run_id else None
        status = status_of(job, run)
        model = None
        number = labels.version(run.candidate_version_id) if run is not None else None
        if status == "succeeded" and number is not None:
            model = f"{labels.agent(job.agent_id)}@v{number}"
        finished = run.finished_at if run is not None else job.cancelled_at
        tokens = (run.metrics or {}).get("trained_tokens") if run is not None else None
        out.append(
            JobOut(
                id=job_public_id(job.id),
                created_at=int(job.created_at.timestamp()),
                error=_error(run),
                fine_tuned_model=model,
                finished_at=int(finished.timestamp()) if finished and status != "running" else None,
                hyperparameters=dict(job.method[job.method["type"]]["hyperparameters"]),
                model=job.model,
                organization_id=tenant.tenant_slug,
                seed=job.seed,
                status=status,  # type: ignore[arg-type]
                trained_tokens=tokens,
                training_file=file_public_id(job.training_file_id)
                if job.training_file_id
                else None,
                validation_file=file_public_id(job.validation_file_id)
                if job.validation_file_id
                else None,
                metadata=job.job_metadata,
                method=job.method,
                suffix=job.suffix,
                cycle_run_id=str(run.id) if run is not None else None,
                progress=run.progress if run is not None else 0.0,
            )
        )
    return out


def job_out(session: Session, tenant: ApiPrincipal, job: FineTuningJob) -> JobOut:
    return jobs_out(session, tenant, [job])[0]


def page_jobs(
    session: Session,
    tenant: ApiPrincipal,
    *,
    after: str | None,
    limit: int,
    metadata: dict[str, str],
) -> tuple[list[JobOut], bool]:
    """Newest first, from just after the job ``after``; only jobs whose metadata holds every
    given pair."""
    after_id = parse_public(after, JOB_PREFIX, "fine-tuning job", "after") if after else None
    repo = FineTuningRepository(session)
    if not metadata:
        rows, more = repo.cursor_page(tenant.tenant_id, after=after_id, limit=limit)
        return jobs_out(session, tenant, rows), more
    # Metadata is a JSON column: filter in Python, paging on until the page is full.
    kept: list[FineTuningJob] = []
    cursor, more = after_id, True
    while more and len(kept) <= limit:
        rows, more = repo.cursor_page(tenant.tenant_id, after=cursor, limit=200)
        kept += [
            r for r in rows if all((r.job_metadata or {}).get(k) == v for k, v in metadata.items())
        ]
        cursor = rows[-1].id if rows else None
    return jobs_out(session, tenant, kept[:limit]), len(kept) > limit or more


def cancel(session: Session, tenant: ApiPrincipal, public: str) -> FineTuningJob:
    """Stop a job: a waiting or queued one never starts; a running one stops at its next
    training step (the trainer's job is cancelled) and promotes nothing."""
    from app.training import queue

    job = get_job(session, tenant.tenant_id, public)
    session.refresh(job, with_for_update=True)  # not started by the ticker meanwhile
    repo = FineTuningRepository(session)
    run = repo.run_of(job)
    status = status_of(job, run)
    if status == "cancelled":
        return job
    if status not in ("queued", "running"):
        raise Conflict(
            f"the job has already {status}; only a queued or running job can be cancelled",
            param="fine_tuning_job_id",
        )
    now = datetime.now(UTC)
    if run is None:
        job.cancelled_at = now
    else:
        session.refresh(run, with_for_update=True)
        if run.status not in ACTIVE_RUN_STATUSES:  # it finished meanwhile
            return job
        run.status = RunStatus.cancelled
        run.finished_at = now
        job.cancelled_at = now
        queue.supersede(session, f"cycle-{run.id}")
    record_event(session, job, "Fine-tuning job cancelled", level="warn")
    session.flush()
    return job


def events(
    session: Session, tenant_id: uuid.UUID, public: str, *, after: str | None, limit: int
) -> tuple[list[EventOut], bool]:
    """The job's events, newest first (OpenAI's order), from just after the event ``after``."""
    job = get_job(session, tenant_id, public)
    after_id = parse_public(after, EVENT_PREFIX, "event", "after") if after else None
    rows, more = EventRepository(session).cursor_page(
        tenant_id, where=[FineTuningEvent.job_id == job.id], after=after_id, limit=limit
    )
    return [
        EventOut(
            id=f"{EVENT_PREFIX}{e.id.hex}",
            created_at=int(e.created_at.timestamp()),
            level=e.level,  # type: ignore[arg-type]
            message=e.message,
            data=e.data,
            type=e.type,  # type: ignore[arg-type]
        )
        for e in rows
    ], more


def checkpoints(session: Session, tenant: ApiPrincipal, public: str) -> list[CheckpointOut]:
    """The versions the job produced (one: its candidate), with their metrics."""
    job = get_job(session, tenant.tenant_id, public)
    run = FineTuningRepository(session).run_of(job)
    if run is None or run.candidate_version_id is None:
        return []
    version = AdapterVersionRepository(session).get(tenant.tenant_id, run.candidate_version_id)
    if version is None:
        return []
    agent = Labels.load(session, tenant.tenant_id, [job.agent_id], []).agent(job.agent_id)
    metrics = run.metrics or {}
    signals = metrics.get("signals") or {}
    losses = metrics.get("final_losses") or {}
    kind = job.method["type"]
    loss_key = {"supervised": "sft", "dpo": "dpo", "reinforcement": "pg"}[kind]
    step = int(metrics.get("trained_steps", 0))
    flat: dict[str, Any] = {"step": step, "train_loss": losses.get(loss_key)}
    for name, signal in signals.items():
        for side in ("before", "after", "agreement"):
            if side in signal and signal[side] is not None:
                flat[f"{name}_{side}"] = signal[side]
    flat["gate"] = (version.metrics or {}).get("gate", {}).get("verdict")
    flat["version_status"] = str(version.status)
    return [
        CheckpointOut(
            id=f"{CHECKPOINT_PREFIX}{version.id.hex}",
            created_at=int(version.created_at.timestamp()),
            fine_tuned_model_checkpoint=f"{agent}@v{version.number}",
            fine_tuning_job_id=job_public_id(job.id),
            metrics=flat,
            step_number=step,
        )
    ]
