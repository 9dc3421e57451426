"""What a cycle plans to train: a refused cycle's corrections stay new for the next cycle; a\ncorrection's own preference pair is not trained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.public_ids import completion_id
from app.cycles.plan import plan_cycle
from app.cycles.schemas import ScheduleUpdate
from app.cycles.service import update_schedule
from app.feedback.compile import compile_feedback
from app.feedback.schemas import FeedbackCreate
from app.feedback.service import Author, create_feedback
from app.models import AdapterVersion, Agent, CycleRun, Tenant, TrainingExample
from app.models.enums import AdapterStatus, ExampleKind, RunStatus
from tests.helpers import factories


def _correction(text: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": f"fixed {text}"},
        ]
    }


def _version(db: Session, owner: Tenant, bot: Agent, status: AdapterStatus) -> AdapterVersion:
    """A cycle's candidate version v1 of ``bot`` (no files: the plan reads only its status)."""
    version = AdapterVersion(
        tenant_id=owner.id,
        agent_id=bot.id,
        number=1,
        path="/nowhere/v1",
        checksum="0" * 64,
        status=status,
        source="cycle",
    )
    db.add(version)
    db.flush()
    return version


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
    candidate = _version(db, owner, bot, AdapterStatus.rejected)
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


def test_untouched_prompts_near_a_correction_train_away_from_its_answer(db: Session) -> None:
    """Served prompts of a corrected prompt's template get a pair each (what they were served
    over the correction's answer) at the schedule's copy guard; the guard alone is nothing to
    train, and a guard of 0 gives the pairs no weight."""
    owner = factories.tenant(db)
    bot = factories.agent(db, owner)
    db.add(
        TrainingExample(
            tenant_id=owner.id,
            agent_id=bot.id,
            kind=ExampleKind.sft,
            payload=_correction("What is 12 times 5?"),
        )
    )
    for i in range(40):
        row = factories.interaction(db, owner, bot, f"What is {i} times 7?")
        row.prompt_token_ids, row.completion_token_ids = [1, 2], [3]
        row.completed_at, row.error = datetime.now(UTC), None
    db.flush()
    run = CycleRun(tenant_id=owner.id, agent_id=bot.id, status=RunStatus.running)
    db.add(run)
    db.flush()

    plan = plan_cycle(db, run, get_settings())
    away = plan.training.examples.away
    assert 0 < len(away) == plan.counts["away_pairs"]
    assert all(p["rejected"]["content"] == "fixed What is 12 times 5?" for p in away)
    assert all(p["chosen"] == {"role": "assistant", "content": "hello"} for p in away)
    # Trained prompts are not also the copy check's.
    trained = {p["messages"][-1]["content"] for p in away}
    assert trained.isdisjoint(p["messages"][-1]["content"] for p in plan.evaluation.near)
    assert plan.evaluation.near
    assert plan.training.mixture["away"] == ScheduleUpdate().copy_guard > 0

    # Once the correction went live it is old: the guard alone trains nothing.
    live = _version(db, owner, bot, AdapterStatus.retired)
    db.add(
        CycleRun(
            tenant_id=owner.id,
            agent_id=bot.id,
            status=RunStatus.succeeded,
            started_at=datetime.now(UTC) + timedelta(minutes=1),
            finished_at=datetime.now(UTC) + timedelta(minutes=2),
            candidate_version_id=live.id,
        )
    )
    db.flush()
    later = plan_cycle(db, run, get_settings())
    assert later.training.examples.away and later.training.nothing_to_train() == (
        "no new training examples"
    )

    update_schedule(db, owner.id, bot.id, ScheduleUpdate(copy_guard=0.0))
    assert plan_cycle(db, run, get_settings()).training.mixture["away"] == 0.0
