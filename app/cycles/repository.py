"""Queries on schedules and cycle runs, within one tenant (except the sweepers' scans)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update

from app.core.repository import TenantScopedRepository
from app.models import AdapterVersion, CycleRun, LearningSchedule
from app.models.enums import ACTIVE_RUN_STATUSES, AdapterStatus, RunStatus, ScheduleMode


class CycleRepository(TenantScopedRepository[CycleRun]):
    """Cycle runs (the base's table) and the agents' learning schedules."""

    model = CycleRun

    def schedule(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> LearningSchedule | None:
        return self.session.scalar(
            select(LearningSchedule).where(
                LearningSchedule.tenant_id == tenant_id, LearningSchedule.agent_id == agent_id
            )
        )

    def get_run(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> CycleRun | None:
        return self.get(tenant_id, run_id)

    def active_run(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> CycleRun | None:
        return self.session.scalar(
            self.scoped(tenant_id).where(
                CycleRun.agent_id == agent_id, CycleRun.status.in_(ACTIVE_RUN_STATUSES)
            )
        )

    def runs(
        self, tenant_id: uuid.UUID, agent_id: uuid.UUID | None = None, limit: int | None = None
    ) -> Sequence[CycleRun]:
        """The tenant's runs (or one agent's), newest first; at most ``limit`` of them."""
        query = self.scoped(tenant_id)
        if agent_id is not None:
            query = query.where(CycleRun.agent_id == agent_id)
        query = query.order_by(CycleRun.created_at.desc()).limit(limit)
        return self.session.scalars(query).all()

    def last_promoted(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> CycleRun | None:
        """The newest cycle whose candidate went live (by the gate, or forced): the examples
        it trained are in the live lineage. A refused or unevaluated cycle's are not."""
        return self.session.scalar(
            self.scoped(tenant_id)
            .join(AdapterVersion, AdapterVersion.id == CycleRun.candidate_version_id)
            .where(
                CycleRun.agent_id == agent_id,
                AdapterVersion.status.in_((AdapterStatus.live, AdapterStatus.retired)),
            )
            .order_by(CycleRun.started_at.desc())
            .limit(1)
        )

    def claim(
        self, tenant_id: uuid.UUID, run_id: uuid.UUID, now: datetime, stale: datetime
    ) -> bool:
        """Take a queued run, or a running one whose worker stopped heartbeating (it died)."""
        result = self.session.execute(
            update(CycleRun)
            .where(
                CycleRun.tenant_id == tenant_id,
                CycleRun.id == run_id,
                (CycleRun.status == RunStatus.queued)
                | ((CycleRun.status == RunStatus.running) & (CycleRun.heartbeat_at < stale)),
            )
            .values(
                status=RunStatus.running,
                started_at=now,
                heartbeat_at=now,
                progress=0.0,
                deadline_at=None,  # set once planned, from this attempt's own steps
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def cron_schedules(self) -> Sequence[LearningSchedule]:
        """Across tenants: the cron ticker fires each tenant's own schedules."""
        return self.session.scalars(
            select(LearningSchedule).where(LearningSchedule.mode == ScheduleMode.cron)
        ).all()

    def lost_runs(self, before: datetime) -> Sequence[CycleRun]:
        """Across tenants: queued cycles last sent (or heartbeating) before ``before``: their
        task may be lost (the broker dropped it, or its message was never sent)."""
        last = func.coalesce(CycleRun.heartbeat_at, CycleRun.created_at)
        return self.session.scalars(
            select(CycleRun)
            .where(CycleRun.status == RunStatus.queued, last < before)
            .with_for_update(skip_locked=True)  # a cancel holding the row wins; see stale_runs
        ).all()

    def overdue_runs(self, now: datetime) -> Sequence[CycleRun]:
        """Across tenants: running cycles past their deadline, locked (skipping a row another
        transaction holds, as `stale_runs` does)."""
        return self.session.scalars(
            select(CycleRun)
            .where(CycleRun.status == RunStatus.running, CycleRun.deadline_at < now)
            .with_for_update(skip_locked=True)
        ).all()

    def stale_runs(self, before: datetime) -> Sequence[CycleRun]:
        """Across tenants: running cycles whose heartbeat stopped (the reaper's scan), locked.

        A row another transaction holds (a cancel, a claim) is skipped, not waited for: the
        reaper would otherwise write "queued" over the cancel it waited on. The next tick sees
        the row as that transaction left it."""
        return self.session.scalars(
            select(CycleRun)
            .where(CycleRun.status == RunStatus.running, CycleRun.heartbeat_at < before)
            .with_for_update(skip_locked=True)
        ).all()
