"""What a cycle plans to train: a refused cycle's corrections stay new for the next cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.cycles.plan import plan_cycle
from app.models import AdapterVersion, CycleRun, TrainingExample
from app.models.enums import AdapterStatus, ExampleKind, RunStatus
from tests.helpers import factories


def _correction(text: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": f"fixed {text}"},
        ]
    }


def test_a_refused_cycles_corrections_are_trained_again_in_full(db: Session) -> None:
    owner = factories.tenant(db)
    bot = factories.agent(db, owner)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(3):
        db.add(
            TrainingExample(
                tenant_id=owner.id,
                agent_id=bot.id,
                kind=ExampleKind.sft,
                payload=_correction(f"question {i}"),
                created_at=t0 + timedelta(seconds=i),
            )
        )
    candidate = AdapterVersion(
        tenant_id=owner.id,
        agent_id=bot.id,
        number=1,
        path="/nowhere/v1",
        checksum="0" * 64,
        status=AdapterStatus.rejected,
        source="cycle",
    )
    db.add(candidate)
    db.flush()
    refused = CycleRun(
        tenant_id=owner.id,
        agent_id=bot.id,
        status=RunStatus.rejected,
        started_at=t0 + timedelta(minutes=5),
        finished_at=t0 + timedelta(minutes=6),
        candidate_version_id=candidate.id,
    )
    rerun = CycleRun(tenant_id=owner.id, agent_id=bot.id, status=RunStatus.running)
    db.add_all([refused, rerun])
    db.flush()

    plan = plan_cycle(db, rerun, get_settings())
    assert plan.counts["new"] == 3 and len(plan.training.examples.sft) == 3
    assert len(plan.evaluation.corrections) == 3

    # Had that cycle's candidate gone live, its corrections would be old: replayed only.
    candidate.status = AdapterStatus.retired
    db.flush()
    plan = plan_cycle(db, rerun, get_settings())
    assert plan.counts["new"] == 0 and plan.evaluation.corrections == []
