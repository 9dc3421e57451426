"""Queries on experiments and their steps, within one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from app.core.repository import TenantScopedRepository
from app.models import Experiment, ExperimentStep
from app.models.enums import RunStatus


class ExperimentRepository(TenantScopedRepository[Experiment]):
    model = Experiment

    def list(self, tenant_id: uuid.UUID, limit: int | None = None) -> Sequence[Experiment]:
        """The tenant's experiments, newest first; at most ``limit`` of them."""
        query = self.scoped(tenant_id).order_by(Experiment.created_at.desc()).limit(limit)
        return self.session.scalars(query).all()

    def steps(self, tenant_id: uuid.UUID, experiment_id: uuid.UUID) -> Sequence[ExperimentStep]:
        return self.steps_of(tenant_id, [experiment_id])

    def steps_of(
        self, tenant_id: uuid.UUID, experiment_ids: Collection[uuid.UUID]
    ) -> Sequence[ExperimentStep]:
        """The steps of these experiments of the tenant, in step order, in one query."""
        return self.session.scalars(
            select(ExperimentStep)
            .where(
                ExperimentStep.tenant_id == tenant_id,
                ExperimentStep.experiment_id.in_(experiment_ids),
            )
            .order_by(ExperimentStep.step)
        ).all()

    def record_step(self, step: ExperimentStep) -> None:
        """One row per (experiment, step): a replayed step does not write twice."""
        values = {
            "id": uuid.uuid4(),
            "created_at": step.created_at,
            "tenant_id": step.tenant_id,
            "experiment_id": step.experiment_id,
            "step": step.step,
            "adapter_version_id": step.adapter_version_id,
            "metrics": step.metrics,
        }
        self.session.execute(insert(ExperimentStep).values(values).on_conflict_do_nothing())

    def running_started_before(self, moment: datetime) -> Sequence[Experiment]:
        """Running experiments of every tenant started before ``moment`` (the reaper's view)."""
        return self.session.scalars(
            select(Experiment).where(
                Experiment.status == RunStatus.running, Experiment.started_at < moment
            )
        ).all()
