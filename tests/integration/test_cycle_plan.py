"""What a cycle plans to train: a refused cycle's corrections stay new for the next cycle; a\ncorrection's own preference pair is not trained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.public_ids import completion_id
from app.cycles.plan import plan_cycle
from app.feedback.compile import compile_feedback
from app.feedback.schemas import FeedbackCreate
from app.feedback.service import Author, create_feedback
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


def test_a_corrections_own_pair_is_not_trained_an_operators_preference_is(db: Session) -> None:
    """A correction compiles to an SFT example and a pair (corrected over original): the cycle
    trains the SFT example only. A preference an operator gave trains with DPO."""
    owner = factories.tenant(db)
    bot = factories.agent(db, owner)
    author = Author(tenant_id=owner.id)
    answer = {"content": "60"}
    corrected = factories.interaction(db, owner, bot, "What is 12 times 5?")
    correction, _ = create_feedback(
        db,
        author,
        FeedbackCreate(
            interaction_id=completion_id(corrected.id), kind="correction", correction=answer
        ),
    )
    preferred = factories.interaction(db, owner, bot, "What is 7 times 3?")
    preference, _ = create_feedback(
        db,
        author,
        FeedbackCreate(
            interaction_id=completion_id(preferred.id),
            kind="preference",
            preference={"chosen": {"content": "21"}, "rejected": answer},
        ),
    )
    for item in (correction, preference):
        compile_feedback(db, owner.id, item.id)
    run = CycleRun(tenant_id=owner.id, agent_id=bot.id, status=RunStatus.running)
    db.add(run)
    db.flush()
    plan = plan_cycle(db, run, get_settings())
    examples = plan.training.examples
    assert [e["messages"][-1]["content"] for e in examples.sft] == ["60"]
    assert [e["chosen"]["content"] for e in examples.dpo] == ["21"]
