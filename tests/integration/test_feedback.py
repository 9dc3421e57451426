"""Feedback ingestion, compilation by a real Celery worker, idempotency, triggers, isolation."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from app.core.db import unit_of_work
from app.cycles import service as cycles
from app.cycles.schemas import ScheduleUpdate
from app.feedback.compile import compile_feedback
from app.models import CycleRun, Feedback, TrainingExample
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant
from tests.helpers.worker import wait_for

pytestmark = pytest.mark.slow


def ask(gateway: Gateway, fx: TenantFixture, text: str = "What is 6 times 7?") -> str:
    resp = fx.client(gateway).chat.completions.create(
        model=fx.agent.name,
        messages=[{"role": "user", "content": text}],
        max_tokens=8,
        temperature=0,
    )
    return resp.id


def feedback(gateway: Gateway, key: str, body: dict) -> httpx.Response:
    return httpx.post(
        f"{gateway.api_base}/feedback",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def examples_of(feedback_id: str) -> list[TrainingExample]:
    with unit_of_work() as session:
        rows = session.scalars(
            select(TrainingExample).where(
                TrainingExample.feedback_id == uuid.UUID(hex=feedback_id[3:])
            )
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def test_each_kind_compiles_into_examples_with_provenance(gateway: Gateway, worker: object) -> None:
    fx = make_tenant()
    first, second = ask(gateway, fx), ask(gateway, fx)  # a preference: one prompt, two answers
    correction = {"content": "42"}
    made = {
        "rating": feedback(
            gateway,
            fx.key,
            {"interaction_id": first, "kind": "rating", "rating": {"thumbs": "down"}},
        ),
        "correction": feedback(
            gateway,
            fx.key,
            {
                "interaction_id": first,
                "kind": "correction",
                "correction": correction,
                "note": "six sevens",
            },
        ),
        "preference": feedback(
            gateway,
            fx.key,
            {
                "interaction_id": second,
                "kind": "preference",
                "preference": {"rejected_interaction_id": first},
            },
        ),
    }
    for resp in made.values():
        assert resp.status_code == 201, resp.text
    rating = wait_for(lambda: examples_of(made["rating"].json()["id"]))
    assert [e.kind for e in rating] == ["reward"]
    assert rating[0].payload["reward"] == -1.0
    assert rating[0].payload["completion_token_ids"] and rating[0].payload["sampling_logprobs"]
    assert rating[0].interaction_id == uuid.UUID(hex=first[9:])
    corr = wait_for(lambda: examples_of(made["correction"].json()["id"]))
    assert sorted(e.kind for e in corr) == ["preference", "sft"]
    sft = next(e for e in corr if e.kind == "sft")
    assert sft.payload["messages"][-1] == {"role": "assistant", "content": "42"}
    assert sft.split == "train"  # the agent's first correction is never held out
    pref = next(e for e in corr if e.kind == "preference")
    assert pref.payload["chosen"]["content"] == "42"
    pref2 = wait_for(lambda: examples_of(made["preference"].json()["id"]))
    assert pref2[0].kind == "preference"
    got = httpx.get(
        f"{gateway.api_base}/feedback/{made['correction'].json()['id']}",
        headers={"Authorization": f"Bearer {fx.key}"},
    )
    assert (
        got.json()["payload"]["correction"] == correction
        and got.json()["payload"]["note"] == "six sevens"
    )


def test_idempotent_feedback_and_compilation(gateway: Gateway, worker: object) -> None:
    fx = make_tenant()
    cid = ask(gateway, fx)
    body = {
        "interaction_id": cid,
        "kind": "correction",
        "correction": {"content": "x"},
        "idempotency_key": "retry-1",
    }
    first, again = feedback(gateway, fx.key, body), feedback(gateway, fx.key, body)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    clash = feedback(
        gateway, fx.key, {**body, "kind": "rating", "correction": None, "rating": {"score": 0.5}}
    )
    assert clash.status_code == 409 and clash.json()["error"]["param"] == "idempotency_key"
    # The same kind on the same interaction with another payload is new feedback too.
    edited = feedback(gateway, fx.key, {**body, "correction": {"content": "y"}})
    assert edited.status_code == 409 and "'retry-1'" in edited.json()["error"]["message"]
    wait_for(lambda: examples_of(first.json()["id"]))
    fid = uuid.UUID(hex=first.json()["id"][3:])
    with unit_of_work() as session:
        compile_feedback(session, fx.tenant.id, fid)  # the same task delivered again
    from app.runtime.worker import celery_app

    celery_app.send_task("feedback.compile", args=[str(fx.tenant.id), str(fid)]).get(timeout=60)
    with unit_of_work() as session:
        count = session.scalar(
            select(func.count()).select_from(Feedback).where(Feedback.tenant_id == fx.tenant.id)
        )
    assert count == 1
    assert len(examples_of(first.json()["id"])) == 2


def test_latest_correction_wins(gateway: Gateway, worker: object) -> None:
    fx = make_tenant()
    cid = ask(gateway, fx)
    old = feedback(
        gateway,
        fx.key,
        {"interaction_id": cid, "kind": "correction", "correction": {"content": "old"}},
    )
    wait_for(lambda: examples_of(old.json()["id"]))
    new = feedback(
        gateway,
        fx.key,
        {"interaction_id": cid, "kind": "correction", "correction": {"content": "new"}},
    )
    wait_for(lambda: examples_of(new.json()["id"]))
    assert all(e.superseded_at is not None for e in examples_of(old.json()["id"]))
    assert all(e.superseded_at is None for e in examples_of(new.json()["id"]))
    # The older correction's task delivered late, twice, after the newer one's: the order the
    # operator gave them in still decides.
    for delivered in (old, old, new, old):
        with unit_of_work() as session:
            compile_feedback(session, fx.tenant.id, uuid.UUID(hex=delivered.json()["id"][3:]))
    assert all(e.superseded_at is not None for e in examples_of(old.json()["id"]))
    assert all(e.superseded_at is None for e in examples_of(new.json()["id"]))


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (
            {
                "kind": "rating",
                "rating": {"thumbs": "up"},
                "interaction_id": "chatcmpl-" + "0" * 32,
            },
            404,
            "interaction_id",
        ),
        (
            {"kind": "rating", "rating": {"thumbs": "up"}, "interaction_id": "nonsense"},
            404,
            "interaction_id",
        ),
        ({"kind": "rating", "interaction_id": "ID"}, 400, "rating"),
        (
            {
                "kind": "rating",
                "rating": {"thumbs": "up"},
                "correction": {"content": "x"},
                "interaction_id": "ID",
            },
            400,
            "correction",
        ),
        ({"kind": "rating", "rating": {"score": 7}, "interaction_id": "ID"}, 400, "rating.score"),
        ({"kind": "correction", "correction": {}, "interaction_id": "ID"}, 400, "correction"),
        ({"kind": "praise", "interaction_id": "ID"}, 400, "kind"),
        (
            {
                "kind": "correction",
                "correction": {"tool_calls": [{"id": "1", "function": {"name": "f"}}]},
                "interaction_id": "ID",
            },
            400,
            "correction.tool_calls.0.function.arguments",
        ),
    ],
)
def test_invalid_feedback_is_refused_and_writes_nothing(
    gateway: Gateway, body: dict, status: int, param: str
) -> None:
    fx = make_tenant()
    cid = ask(gateway, fx)
    body = {k: (cid if v == "ID" else v) for k, v in body.items()}
    resp = feedback(gateway, fx.key, body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["param"] == param
    with unit_of_work() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Feedback).where(Feedback.tenant_id == fx.tenant.id)
            )
            == 0
        )


def test_feedback_on_another_tenants_interaction_is_404(gateway: Gateway) -> None:
    a, b = make_tenant(), make_tenant()
    cid = ask(gateway, a)
    resp = feedback(
        gateway, b.key, {"interaction_id": cid, "kind": "rating", "rating": {"thumbs": "up"}}
    )
    assert resp.status_code == 404
    mine = feedback(
        gateway, a.key, {"interaction_id": cid, "kind": "rating", "rating": {"thumbs": "up"}}
    )
    other_read = httpx.get(
        f"{gateway.api_base}/feedback/{mine.json()['id']}",
        headers={"Authorization": f"Bearer {b.key}"},
    )
    assert other_read.status_code == 404


def test_every_k_schedule_fires_after_kth_item(gateway: Gateway, worker: object) -> None:
    fx = make_tenant()
    with unit_of_work() as session:
        cycles.update_schedule(
            session, fx.tenant.id, fx.agent.id, ScheduleUpdate(mode="every_k", every_k=3, steps=1)
        )
    cid = ask(gateway, fx)

    def runs() -> int:
        with unit_of_work() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(CycleRun)
                    .where(CycleRun.agent_id == fx.agent.id)
                )
                or 0
            )

    for i in range(2):
        assert (
            feedback(
                gateway,
                fx.key,
                {"interaction_id": cid, "kind": "rating", "rating": {"score": 0.1 * i}},
            ).status_code
            == 201
        )

    def compiled() -> bool:
        with unit_of_work() as session:
            pending = session.scalar(
                select(func.count())
                .select_from(Feedback)
                .where(Feedback.tenant_id == fx.tenant.id, Feedback.compiled_at.is_(None))
            )
        return pending == 0

    wait_for(compiled)
    assert runs() == 0
    feedback(gateway, fx.key, {"interaction_id": cid, "kind": "rating", "rating": {"score": 0.9}})
    wait_for(lambda: runs() == 1)
    with unit_of_work() as session:
        run = session.scalars(select(CycleRun).where(CycleRun.agent_id == fx.agent.id)).one()
        assert run.trigger == "every_k"


def test_two_triggers_at_once_start_one_cycle(database_url: str) -> None:
    fx = make_tenant()
    results: list[uuid.UUID] = []
    barrier = threading.Barrier(2)

    def trigger() -> None:
        barrier.wait()
        with unit_of_work() as session:
            run, _ = cycles.start_cycle(session, fx.tenant.id, fx.agent.id)
            results.append(run.id)

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with unit_of_work() as session:
        active = session.scalars(select(CycleRun).where(CycleRun.agent_id == fx.agent.id)).all()
    assert len(active) == 1
    assert results and all(r == active[0].id for r in results)


def test_a_correction_trains_on_the_conversation_as_served(
    gateway: Gateway, worker: object
) -> None:
    """The compiled example keeps the system prompt and tools the agent was served with, and
    the training rows the trainer builds from it contain them."""
    from transformers import AutoTokenizer

    from tests.helpers.engine import MODEL_DIR
    from trainer.envs import CalculatorEnvironment
    from trainer.objective import sft_batch

    env = CalculatorEnvironment()
    fx = make_tenant()
    served = env.initial_messages(env.tasks("test", 1, seed=3)[0])
    reply = fx.client(gateway).chat.completions.create(
        model=fx.agent.name,
        messages=served,
        tools=env.tools(),
        temperature=0,
        max_tokens=48,  # type: ignore[arg-type]
    )
    fix = {
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
            }
        ],
    }
    made = feedback(
        gateway, fx.key, {"interaction_id": reply.id, "kind": "correction", "correction": fix}
    )
    assert made.status_code == 201, made.text
    sft = next(e for e in wait_for(lambda: examples_of(made.json()["id"])) if e.kind == "sft")
    assert sft.payload["messages"][:-1] == served
    assert sft.payload["messages"][0] == {"role": "system", "content": env.system_prompt}
    assert sft.payload["tools"] == env.tools()
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    row = sft_batch(tokenizer, [sft.payload])
    ids, mask = row.input_ids[0], row.loss_mask[0]
    context = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    # The system prompt and the tools (the bundled template lists them by name) are rendered.
    assert env.system_prompt in context
    assert all(f"{t['function']['name']}(" in context for t in env.tools())
    trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert "1+1" in trained and env.system_prompt not in trained


def test_a_preference_between_two_prompts_is_refused(gateway: Gateway) -> None:
    fx = make_tenant()
    first, other = ask(gateway, fx), ask(gateway, fx, "And 8 times 9?")
    body = {
        "interaction_id": other,
        "kind": "preference",
        "preference": {"rejected_interaction_id": first},
    }
    refused = feedback(gateway, fx.key, body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "preference.rejected_interaction_id"
