"""A job's status, error and model name follow its cycle run (OpenAI's statuses)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from app.fine_tuning.service import _error, status_of
from app.models import CycleRun, FineTuningJob
from app.models.enums import RunStatus


def job(**kw: object) -> FineTuningJob:
    return FineTuningJob(id=uuid.uuid4(), tenant_id=uuid.uuid4(), agent_id=uuid.uuid4(), **kw)


def run(status: RunStatus, **metrics: object) -> CycleRun:
    return CycleRun(
        id=uuid.uuid4(),
        status=status,
        metrics=metrics,
        error="boom",
        candidate_version_id=uuid.uuid4(),
    )


def test_a_job_without_a_run_waits_or_was_cancelled() -> None:
    assert status_of(job(), None) == "queued"
    assert status_of(job(cancelled_at=datetime.now(UTC)), None) == "cancelled"


def test_the_runs_outcome_is_the_jobs() -> None:
    expected = {
        RunStatus.queued: "queued",
        RunStatus.running: "running",
        RunStatus.succeeded: "succeeded",
        RunStatus.rejected: "failed",
        RunStatus.needs_evaluation: "failed",
        RunStatus.failed: "failed",
        RunStatus.cancelled: "cancelled",
    }
    assert {s: status_of(job(), run(s)) for s in RunStatus} == expected


def test_a_refused_candidate_names_the_failing_signal() -> None:
    refused = _error(
        run(RunStatus.rejected, decision="environment: reward fell", failed_signal="environment")
    )
    assert refused is not None and refused.code == "evaluation_failed"
    assert refused.param == "environment" and "reward fell" in refused.message
    empty = _error(run(RunStatus.needs_evaluation, decision="needs evaluation: no signal."))
    assert empty is not None and empty.code == "needs_evaluation"
    assert empty.param == "validation_file"
    crashed = _error(run(RunStatus.failed))
    assert crashed is not None and crashed.code == "training_failed" and crashed.message == "boom"
    assert _error(run(RunStatus.succeeded)) is None and _error(None) is None
    nothing = run(RunStatus.rejected, decision="no rollouts to learn from")
    nothing.candidate_version_id = None  # ended before a candidate was trained
    ended = _error(nothing)
    assert ended is not None and ended.code == "training_failed"


def test_a_cancelled_job_stays_cancelled_whatever_its_run_says() -> None:
    cancelled = job(cancelled_at=datetime.now(UTC))
    assert status_of(cancelled, run(RunStatus.succeeded)) == "cancelled"
