"""schedule_defaults: a schedule stores only what the admin chose; upgrades carry the defaults.

A learning schedule kept the values it was created with, so agents made under earlier
defaults (``kl_coef`` 0 and 30 steps, later ``kl_coef`` 32 and 60 steps) kept those settings,
which measurement has since shown to forget. From here on a NULL column means "the current
default" (`app.cycles.schemas.ScheduleUpdate`), and ``promotion_rule`` holds only the keys an
admin set. This migration moves every schedule still on an old default set to NULL, and gives
agents created before ``default_max_tokens`` existed the default cap (256).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OLD_DEFAULT_SETS = [
    (30, 3e-3, 0.0),
    (30, 1e-3, 0.0),
    (30, 1e-3, 1.0),
    (30, 3e-4, 32.0),
    (60, 3e-4, 32.0),
    (100, 3e-4, 64.0),
]
"""(steps, learning_rate, kl_coef) as every release defaulted them, oldest first."""
OLD_DEFAULT_MIXTURES = [{"sft": 1.0}, {"sft": 1.0, "pg": 1.0}]
DEFAULT_REPLAY_SHARE = 0.5
RULE_DEFAULTS = {
    "max_regression": 0.01,
    "require_improvement": True,
    "preserve_min": 0.95,
    "min_examples": 5,
    "environment_tasks": 200,
}
"""The promotion rule's defaults as of this migration (keys equal to them are dropped)."""
CURRENT = {
    "steps": 100,
    "learning_rate": 3e-4,
    "kl_coef": 64.0,
    "replay_share": 0.5,
    "loss_mixture": {"sft": 1.0, "pg": 1.0},
}
"""What a NULL reads as when downgrading."""
DEFAULT_MAX_TOKENS = 256

FIELDS = ("loss_mixture", "steps", "learning_rate", "replay_share", "kl_coef")


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def _same(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))


def upgrade() -> None:
    for name in FIELDS:
        op.alter_column("learning_schedules", name, nullable=True)
    conn = op.get_bind()
    schedules = conn.execute(
        sa.text(
            "SELECT id, steps, learning_rate, kl_coef, replay_share, loss_mixture, "
            "promotion_rule FROM learning_schedules"
        )
    ).all()
    for row in schedules:
        changes: dict[str, object] = {}
        if any(
            row.steps == steps and _same(row.learning_rate, lr) and _same(row.kl_coef, kl)
            for steps, lr, kl in OLD_DEFAULT_SETS
        ):
            changes.update(steps=None, learning_rate=None, kl_coef=None)
        if _same(row.replay_share, DEFAULT_REPLAY_SHARE):
            changes["replay_share"] = None
        if _json(row.loss_mixture) in OLD_DEFAULT_MIXTURES:
            changes["loss_mixture"] = None
        rule = _json(row.promotion_rule) or {}
        chosen = {k: v for k, v in rule.items() if k not in RULE_DEFAULTS or RULE_DEFAULTS[k] != v}
        changes["promotion_rule"] = json.dumps(chosen)
        sets = ", ".join(
            f"{k} = CAST(:{k} AS JSON)" if k in ("loss_mixture", "promotion_rule") else f"{k} = :{k}"
            for k in changes
        )
        conn.execute(
            sa.text(f"UPDATE learning_schedules SET {sets} WHERE id = :id"),
            {**changes, "id": row.id},
        )
    agents = conn.execute(sa.text("SELECT id, settings FROM agents")).all()
    for agent in agents:
        settings = _json(agent.settings) or {}
        if settings.get("default_max_tokens") is None:
            settings["default_max_tokens"] = DEFAULT_MAX_TOKENS
            conn.execute(
                sa.text("UPDATE agents SET settings = CAST(:s AS JSON) WHERE id = :id"),
                {"s": json.dumps(settings), "id": agent.id},
            )


def downgrade() -> None:
    conn = op.get_bind()
    for name, value in CURRENT.items():
        encoded = json.dumps(value) if name == "loss_mixture" else value
        cast = "CAST(:v AS JSON)" if name == "loss_mixture" else ":v"
        conn.execute(
            sa.text(f"UPDATE learning_schedules SET {name} = {cast} WHERE {name} IS NULL"),
            {"v": encoded},
        )
    for name in FIELDS:
        op.alter_column("learning_schedules", name, nullable=False)
