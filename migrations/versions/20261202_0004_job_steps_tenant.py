"""training_job_steps carries its tenant, like every other table of tenant data.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("training_job_steps", sa.Column("tenant_id", sa.Uuid(), nullable=True))
    op.execute(
        "UPDATE training_job_steps s SET tenant_id = j.tenant_id FROM training_jobs j "
        "WHERE j.id = s.job_id"
    )
    op.alter_column("training_job_steps", "tenant_id", nullable=False)
    op.create_foreign_key(
        op.f("fk_training_job_steps_tenant_id_tenants"),
        "training_job_steps",
        "tenants",
        ["tenant_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(op.f("ix_training_job_steps_tenant_id"), "training_job_steps", ["tenant_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_training_job_steps_tenant_id"), "training_job_steps")
    op.drop_constraint(
        op.f("fk_training_job_steps_tenant_id_tenants"), "training_job_steps", type_="foreignkey"
    )
    op.drop_column("training_job_steps", "tenant_id")
