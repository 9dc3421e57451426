"""Upgrades carry the measured defaults: a schedule stores only what an admin chose, and the
0008 migration moves schedules still on an old default set to "the default"."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app.core.db import normalise_url
from app.cycles import service
from app.cycles.schemas import PromotionRule, ScheduleUpdate
from app.runtime import migrate
from tests.helpers import factories
from tests.helpers.database import create_database, drop_database


def test_a_schedule_stores_only_what_the_admin_chose(db: Session) -> None:
    owner = factories.tenant(db)
    bot = factories.agent(db, owner)
    defaults = ScheduleUpdate()
    assert service.read_schedule(db, owner.id, bot.id) == defaults
    chosen = ScheduleUpdate(
        kl_coef=8.0, steps=defaults.steps, promotion_rule=PromotionRule(min_examples=3)
    )
    shown = service.update_schedule(db, owner.id, bot.id, chosen)
    assert shown == chosen
    row = service.get_schedule(db, owner.id, bot.id)
    assert (row.kl_coef, row.steps, row.learning_rate, row.loss_mixture) == (8.0, None, None, None)
    assert row.promotion_rule == {"min_examples": 3}


def _insert(conn, agent_settings: dict, schedule: tuple) -> uuid.UUID:  # type: ignore[no-untyped-def]
    tenant, agent = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        text("INSERT INTO tenants (id, created_at, slug, name) VALUES (:i, now(), :s, :s)"),
        {"i": tenant, "s": f"m-{tenant.hex[:8]}"},
    )
    conn.execute(
        text(
            "INSERT INTO agents (id, created_at, tenant_id, name, description, lora_rank, "
            "lora_alpha, lora_target_modules, settings) VALUES (:i, now(), :t, 'bot', '', 8, 16, "
            "CAST(:m AS JSON), CAST(:s AS JSON))"
        ),
        {"i": agent, "t": tenant, "m": json.dumps(["q_proj"]), "s": json.dumps(agent_settings)},
    )
    steps, lr, kl, mixture, rule = schedule
    conn.execute(
        text(
            "INSERT INTO learning_schedules (id, created_at, tenant_id, agent_id, mode, steps, "
            "learning_rate, replay_share, kl_coef, loss_mixture, promotion_rule) VALUES "
            "(:i, now(), :t, :a, 'manual', :steps, :lr, 0.5, :kl, CAST(:mix AS JSON), "
            "CAST(:rule AS JSON))"
        ),
        {
            "i": uuid.uuid4(),
            "t": tenant,
            "a": agent,
            "steps": steps,
            "lr": lr,
            "kl": kl,
            "mix": json.dumps(mixture),
            "rule": json.dumps(rule),
        },
    )
    return agent


def test_the_migration_moves_old_defaults_to_the_default_and_caps_old_agents() -> None:
    url = create_database()
    engine = create_engine(normalise_url(url))
    try:
        migrate.upgrade(url, "0007")
        rule = {"max_regression": 0.01, "preserve_min": 0.95, "min_examples": 5}
        with engine.begin() as conn:
            first = _insert(conn, {"environment": None}, (30, 3e-3, 0.0, {"sft": 1.0}, rule))
            middle = _insert(conn, {}, (60, 3e-4, 32.0, {"sft": 1.0, "pg": 1.0}, rule))
            chosen = _insert(
                conn,
                {"default_max_tokens": 64},
                (60, 3e-4, 8.0, {"sft": 1.0, "dpo": 0.5}, {**rule, "min_examples": 3}),
            )
        migrate.upgrade(url)
        with engine.connect() as conn:
            rows = {
                r.agent_id: r
                for r in conn.execute(
                    text(
                        "SELECT s.agent_id, s.steps, s.learning_rate, s.kl_coef, s.replay_share, "
                        "s.loss_mixture, s.promotion_rule, a.settings FROM learning_schedules s "
                        "JOIN agents a ON a.id = s.agent_id"
                    )
                )
            }
        for agent in (first, middle):  # on an old default set: every setting follows today's
            r = rows[agent]
            assert (r.steps, r.learning_rate, r.kl_coef, r.replay_share, r.loss_mixture) == (
                None,
                None,
                None,
                None,
                None,
            )
            assert r.promotion_rule == {} and r.settings["default_max_tokens"] == 256
        mine = rows[chosen]  # an admin's own choice stays, and so does the agent's cap
        assert (mine.steps, mine.kl_coef, mine.loss_mixture) == (60, 8.0, {"sft": 1.0, "dpo": 0.5})
        assert mine.promotion_rule == {"min_examples": 3}
        assert mine.settings["default_max_tokens"] == 64
        # Read back through the service: the old-default agents get today's schedule.
        from app.models import LearningSchedule

        with Session(engine) as session:
            for agent, kl in ((first, ScheduleUpdate().kl_coef), (chosen, 8.0)):
                row = session.query(LearningSchedule).filter_by(agent_id=agent).one()
                assert service.effective_schedule(row).kl_coef == kl
        migrate.downgrade(url, "0007")
        with engine.connect() as conn:
            steps = conn.execute(
                text("SELECT steps FROM learning_schedules WHERE agent_id = :a"), {"a": first}
            ).scalar()
        assert steps == ScheduleUpdate().steps
    finally:
        engine.dispose()
        drop_database(url)
