"""The fine-tuning API: uploaded files, fine-tuning jobs and their events.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 14:11:50.160581
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_files_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index(op.f("ix_files_tenant_id"), "files", ["tenant_id"], unique=False)
    op.create_table(
        "fine_tuning_jobs",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("base_version_id", sa.Uuid(), nullable=True),
        sa.Column("method", sa.JSON(), nullable=False),
        sa.Column("training_file_id", sa.Uuid(), nullable=True),
        sa.Column("validation_file_id", sa.Uuid(), nullable=True),
        sa.Column("suffix", sa.String(length=64), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("cycle_run_id", sa.Uuid(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_fine_tuning_jobs_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["base_version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_fine_tuning_jobs_base_version_id_adapter_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["cycle_run_id"],
            ["cycle_runs.id"],
            name=op.f("fk_fine_tuning_jobs_cycle_run_id_cycle_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_fine_tuning_jobs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["training_file_id"],
            ["files.id"],
            name=op.f("fk_fine_tuning_jobs_training_file_id_files"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["validation_file_id"],
            ["files.id"],
            name=op.f("fk_fine_tuning_jobs_validation_file_id_files"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fine_tuning_jobs")),
        sa.UniqueConstraint("cycle_run_id", name=op.f("uq_fine_tuning_jobs_cycle_run_id")),
    )
    op.create_index(
        op.f("ix_fine_tuning_jobs_agent_id"), "fine_tuning_jobs", ["agent_id"], unique=False
    )
    op.create_index(
        "ix_fine_tuning_jobs_tenant_created",
        "fine_tuning_jobs",
        ["tenant_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_fine_tuning_jobs_tenant_id"), "fine_tuning_jobs", ["tenant_id"], unique=False
    )
    op.create_table(
        "fine_tuning_events",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fine_tuning_jobs.id"],
            name=op.f("fk_fine_tuning_events_job_id_fine_tuning_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_fine_tuning_events_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fine_tuning_events")),
    )
    op.create_index(
        "ix_fine_tuning_events_job_created",
        "fine_tuning_events",
        ["job_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_fine_tuning_events_tenant_id"), "fine_tuning_events", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_fine_tuning_events_tenant_id"), table_name="fine_tuning_events")
    op.drop_index("ix_fine_tuning_events_job_created", table_name="fine_tuning_events")
    op.drop_table("fine_tuning_events")
    op.drop_index(op.f("ix_fine_tuning_jobs_tenant_id"), table_name="fine_tuning_jobs")
    op.drop_index("ix_fine_tuning_jobs_tenant_created", table_name="fine_tuning_jobs")
    op.drop_index(op.f("ix_fine_tuning_jobs_agent_id"), table_name="fine_tuning_jobs")
    op.drop_table("fine_tuning_jobs")
    op.drop_index(op.f("ix_files_tenant_id"), table_name="files")
    op.drop_table("files")
