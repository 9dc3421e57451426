"""copy_guard: the weight of the pairs that train near prompts away from a correction's answer.

NULL, like every schedule setting, reads as the current default.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("learning_schedules", sa.Column("copy_guard", sa.Double(), nullable=True))


def downgrade() -> None:
    op.drop_column("learning_schedules", "copy_guard")
