"""Cycle status needs_evaluation: a candidate with nothing to be compared on.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD = ("queued", "running", "succeeded", "rejected", "failed", "cancelled")
NEW = (*OLD, "needs_evaluation")
TABLES = ("cycle_runs", "training_jobs", "experiments")


def _recreate(values: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{v}'" for v in values)
    for table in TABLES:
        op.drop_constraint(op.f(f"ck_{table}_runstatus"), table, type_="check")
        op.create_check_constraint("runstatus", table, f"status IN ({listed})")


def upgrade() -> None:
    _recreate(NEW)


def downgrade() -> None:
    op.execute("UPDATE cycle_runs SET status = 'rejected' WHERE status = 'needs_evaluation'")
    _recreate(OLD)
