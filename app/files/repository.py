"""Queries on uploaded files, within one tenant."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from app.core.repository import TenantScopedRepository
from app.models import CycleRun, FineTuningJob, TenantFile
from app.models.enums import ACTIVE_RUN_STATUSES


class FileRepository(TenantScopedRepository[TenantFile]):
    model = TenantFile

    def content(self, tenant_id: uuid.UUID, file_id: uuid.UUID) -> TenantFile | None:
        """The file with its bytes loaded."""
        return self.session.scalar(
            self.scoped(tenant_id)
            .where(TenantFile.id == file_id)
            .options(undefer(TenantFile.content))
        )

    def stored_bytes(self, tenant_id: uuid.UUID) -> int:
        """The bytes the tenant's files hold."""
        total = func.coalesce(func.sum(TenantFile.size), 0)
        return int(self.session.scalar(self.scoped(tenant_id).with_only_columns(total)) or 0)

    def active_jobs_using(self, tenant_id: uuid.UUID, file_id: uuid.UUID) -> list[FineTuningJob]:
        """The tenant's unfinished fine-tuning jobs that name the file (training or
        validation): waiting for their cycle, or with a cycle queued or running."""
        return list(
            self.session.scalars(
                select(FineTuningJob)
                .outerjoin(CycleRun, CycleRun.id == FineTuningJob.cycle_run_id)
                .where(
                    FineTuningJob.tenant_id == tenant_id,
                    (FineTuningJob.training_file_id == file_id)
                    | (FineTuningJob.validation_file_id == file_id),
                    ((CycleRun.id.is_(None)) & FineTuningJob.cancelled_at.is_(None))
                    | CycleRun.status.in_(ACTIVE_RUN_STATUSES),
                )
            )
        )
