"""Queries on fine-tuning jobs and their events, within one tenant (except the starter's scan)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select

from app.core.repository import TenantScopedRepository
from app.models import CycleRun, FineTuningEvent, FineTuningJob
from app.models.enums import ACTIVE_RUN_STATUSES


class FineTuningRepository(TenantScopedRepository[FineTuningJob]):
    model = FineTuningJob

    def active_count(self, tenant_id: uuid.UUID) -> int:
        """The tenant's jobs waiting for their cycle, or with a cycle queued or running."""
        query = (
            select(func.count())
            .select_from(FineTuningJob)
            .outerjoin(CycleRun, CycleRun.id == FineTuningJob.cycle_run_id)
            .where(FineTuningJob.tenant_id == tenant_id)
            .where(
                (CycleRun.id.is_(None) & FineTuningJob.cancelled_at.is_(None))
                | CycleRun.status.in_(ACTIVE_RUN_STATUSES)
            )
        )
        return int(self.session.scalar(query) or 0)

    def for_run(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> FineTuningJob | None:
        """The job a cycle run runs, if it runs one."""
        return self.session.scalar(
            self.scoped(tenant_id).where(FineTuningJob.cycle_run_id == run_id)
        )

    def get_any(self, job_id: uuid.UUID) -> FineTuningJob | None:
        """A job by id whatever its tenant (the cycle runner's, which holds the id already)."""
        return self.session.get(FineTuningJob, job_id)

    def run_of(self, job: FineTuningJob) -> CycleRun | None:
        if job.cycle_run_id is None:
            return None
        return self.session.scalar(
            select(CycleRun).where(
                CycleRun.tenant_id == job.tenant_id, CycleRun.id == job.cycle_run_id
            )
        )

    def runs_of(self, jobs: Sequence[FineTuningJob]) -> dict[uuid.UUID, CycleRun]:
        """The cycle runs of these jobs (one tenant's), by run id, in one query."""
        ids = [j.cycle_run_id for j in jobs if j.cycle_run_id is not None]
        if not ids:
            return {}
        tenant = jobs[0].tenant_id
        rows = self.session.scalars(
            select(CycleRun).where(CycleRun.tenant_id == tenant, CycleRun.id.in_(ids))
        )
        return {r.id: r for r in rows}

    def waiting(self, agent_id: uuid.UUID | None = None) -> Sequence[FineTuningJob]:
        """Across tenants (or one agent's): jobs not started nor cancelled, oldest first."""
        query = select(FineTuningJob).where(
            FineTuningJob.cycle_run_id.is_(None), FineTuningJob.cancelled_at.is_(None)
        )
        if agent_id is not None:
            query = query.where(FineTuningJob.agent_id == agent_id)
        return self.session.scalars(query.order_by(FineTuningJob.created_at)).all()


class EventRepository(TenantScopedRepository[FineTuningEvent]):
    model = FineTuningEvent
