"""The trainer service's shared rounds, in process on a database of their own: jobs of several
tenants share passes and equal training alone; fair share follows the tenants' weights."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import func, select

from app.core import db as core_db
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.core.redis import get_redis
from app.models import Tenant, TrainingJob, TrainingJobStep
from app.models.enums import RunStatus
from app.runtime import migrate
from app.training import queue
from app.training.daemon import TrainerDaemon
from tests.helpers.database import create_database, drop_database

pytestmark = pytest.mark.slow


def examples(seed: int, n: int = 4) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {a} plus {seed}?"},
                {"role": "assistant", "content": f"The answer is {a + seed}."},
            ]
        }
        for a in range(seed, seed + n)
    ]


def payload(tenant: uuid.UUID, out: Path, seed: int, steps: int, **extra: object) -> dict:
    return {
        "adapter_id": f"a{seed}",
        "parent_dir": None,
        "steps": steps,
        "lr": 5e-3,
        "lora": {"rank": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "examples": {
            "sft": examples(seed),
            "kl": [{"prompt_token_ids": [1, 2, 3, 4], "completion_token_ids": [5, 6, 7]}],
        },
        "mixture": {"sft": 1.0},
        "kl_coef": 0.5,
        "write_to": str(out),
        "tenant": str(tenant),
        **extra,
    }


@pytest.fixture
def own_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A database of its own (no other trainer claims these jobs) for `unit_of_work`."""
    url = create_database()
    migrate.upgrade(url)
    monkeypatch.setenv("CLORA_DATABASE_URL", url)
    monkeypatch.setenv("CLORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLORA_TRAINER_MAX_ACTIVE", "8")
    for cached in (get_settings, core_db.get_engine, core_db.get_sessionmaker):
        cached.cache_clear()
    yield
    core_db.get_engine().dispose()
    for cached in (get_settings, core_db.get_engine, core_db.get_sessionmaker):
        cached.cache_clear()
    monkeypatch.undo()
    get_settings.cache_clear()
    drop_database(url)


@pytest.fixture
def service(own_db: None) -> TrainerDaemon:
    svc = TrainerDaemon(worker_id="rounds")
    svc.warm()
    return svc


def tenants(n: int) -> list[uuid.UUID]:
    with unit_of_work() as session:
        rows = [Tenant(slug=f"t-{uuid.uuid4().hex[:8]}", name="t") for _ in range(n)]
        session.add_all(rows)
        session.flush()
        return [t.id for t in rows]


def enqueue(tenant: uuid.UUID, body: dict) -> uuid.UUID:
    with unit_of_work() as session:
        return queue.enqueue(session, tenant, None, "train", body, int(body["steps"])).id


def drain(svc: TrainerDaemon, limit: int = 500) -> None:
    for _ in range(limit):
        if not svc.run_round():
            return
    raise AssertionError("the trainer did not finish its jobs")


def test_jobs_of_three_tenants_share_rounds_and_equal_training_alone(
    service: TrainerDaemon, tmp_path: Path
) -> None:
    owners = tenants(3)
    for i, t in enumerate(owners):
        enqueue(t, payload(t, tmp_path / f"shared{i}", i + 2, 4))
    passes = []
    original = service.engine._run_pass
    service.engine._run_pass = lambda plan, *a: (
        passes.append(len(plan.adapter_ids)),
        original(plan, *a),
    )[1]  # type: ignore[method-assign]
    drain(service)
    assert max(passes) == 3, "rows of the three jobs never shared a pass"
    service.engine._run_pass = original  # type: ignore[method-assign]
    for i, t in enumerate(owners):
        enqueue(t, payload(t, tmp_path / f"alone{i}", i + 2, 4))
        drain(service)
    with unit_of_work() as session:
        jobs = session.scalars(select(TrainingJob)).all()
        assert {j.status for j in jobs} == {RunStatus.succeeded}
        counts = session.execute(
            select(TrainingJobStep.job_id, func.count()).group_by(TrainingJobStep.job_id)
        ).all()
        assert sorted(c for _, c in counts) == [4] * 6  # every step recorded once
    for i in range(3):
        a = load_file(tmp_path / f"shared{i}" / "adapter_model.safetensors")
        b = load_file(tmp_path / f"alone{i}" / "adapter_model.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)


def test_fair_share_follows_tenant_weights_and_starves_nobody(
    service: TrainerDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 heavy tenant (weight 3) and 3 light ones (weight 1), equal steps, all contending: the
    heavy tenant trains about 3x the tokens of each light one while every job advances."""
    heavy, *light = tenants(4)
    jobs = {
        t: enqueue(t, payload(t, tmp_path / str(t), 5, 200, weight=3.0 if t == heavy else 1.0))
        for t in [heavy, *light]
    }
    for _ in range(30):
        service.run_round()
    tokens = {t: service.trained_tokens.get(j, 0) for t, j in jobs.items()}
    assert all(tokens[t] > 0 for t in light), tokens
    ratios = [tokens[heavy] / tokens[t] for t in light]
    assert all(2.5 <= r <= 3.5 for r in ratios), (tokens, ratios)


def test_a_bad_job_fails_alone_in_a_shared_round(service: TrainerDaemon, tmp_path: Path) -> None:
    good, bad = tenants(2)
    ok = enqueue(good, payload(good, tmp_path / "ok", 2, 3))
    broken = payload(bad, tmp_path / "bad", 3, 3)
    broken["examples"] = {"kl": [{"prompt_token_ids": [1, 2], "completion_token_ids": [10**6]}]}
    broken["kl_coef"] = 1.0
    failing = enqueue(bad, broken)
    drain(service)
    with unit_of_work() as session:
        assert session.get(TrainingJob, ok).status == RunStatus.succeeded  # type: ignore[union-attr]
        job = session.get(TrainingJob, failing)
        assert job is not None and job.status == RunStatus.failed
        assert "vocabulary" in (job.error or "")


def test_a_job_stops_once_its_corrections_are_learned(
    service: TrainerDaemon, tmp_path: Path
) -> None:
    """With `stop_margin` a job ends at the first step whose SFT rows were all greedy by the
    margin, recorded as learned; the same job without it trains to its last step."""
    t1, t2 = tenants(2)
    body = {"lr": 3e-2, "kl_coef": 0.0}
    stopping = enqueue(t1, payload(t1, tmp_path / "s", 1, 60, stop_margin=0.5, **body))
    full = enqueue(t2, payload(t2, tmp_path / "f", 1, 60, **body))
    drain(service)
    with unit_of_work() as session:
        jobs = {j: session.get(TrainingJob, j) for j in (stopping, full)}
        steps = {j: queue.steps_after(session, j, 0) for j in jobs}
        assert all(job.status == RunStatus.succeeded for job in jobs.values())
        learned = [s.step for s in steps[stopping] if s.metrics["learned"]]
        assert learned == [steps[stopping][-1].step] and learned[0] < 60, learned
        assert steps[stopping][-1].metrics["losses"]["margin"] >= 0.5
        assert all(s.metrics["losses"]["margin"] < 0.5 for s in steps[stopping][:-1])
        assert jobs[stopping].result["learned"] and jobs[stopping].result["steps"] == learned[0]
        assert len(steps[full]) == 60 and not jobs[full].result["learned"]
    assert (tmp_path / "s" / "adapter_model.safetensors").is_file()


def rl_request(step: int, save_to: Path, seed: int) -> str:
    """A policy-gradient step request as an experiment loop sends it."""
    gen = torch.Generator().manual_seed(seed)
    ids = [torch.randint(0, 400, (12,), generator=gen).tolist() for _ in range(4)]
    batch = {
        "input_ids": ids,
        "loss_mask": [[0.0] * 4 + [1.0] * 8 for _ in ids],
        "advantages": [1.0, -1.0, 0.5, -0.5],
        "sampling_logprobs": [[0.0] * 4 + [-2.0] * 8 for _ in ids],
    }
    return json.dumps({"step": step, "lr": 1e-2, "save_to": str(save_to), "batch": batch})


def test_an_rl_job_trains_on_request_in_rounds_shared_with_cycles(
    service: TrainerDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An experiment's adapter is a job like a cycle's: its step shares the round's passes
    with the cycle's step; the result comes back on the step's reply list; a request for a
    step already applied is answered from its record; "done" ends the job."""
    import trainer.objective

    shared: list[int] = []
    real = trainer.objective.accumulate_round

    def counting(engine, work, **kw):  # type: ignore[no-untyped-def]
        shared.append(len(work))
        return real(engine, work, **kw)

    monkeypatch.setattr(trainer.objective, "accumulate_round", counting)
    t1, t2 = tenants(2)
    enqueue(t1, payload(t1, tmp_path / "cycle", 1, 4))
    lora = {"rank": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    with unit_of_work() as session:
        body = {"adapter_id": "rl", "lora": lora, "parent_dir": None, "tenant": str(t2)}
        rl = queue.enqueue(session, t2, None, "rl", body, 0).id
    redis = get_redis()
    inbox = queue.RL_INBOX.format(job=rl)
    for step in (1, 2, 3):
        redis.rpush(inbox, rl_request(step, tmp_path / f"v{step}", seed=step))
    for _ in range(10):
        service.run_round()
    # Fair share admits the small RL step every round and the larger cycle step when its
    # credit covers it: those rounds accumulate both adapters' rows together.
    assert 2 in shared, shared
    replies = [
        json.loads(redis.lpop(queue.RL_REPLY.format(job=rl, step=step)))  # type: ignore[arg-type]
        for step in (1, 2, 3)
    ]
    reply = replies[0]
    assert [r["step"] for r in replies] == [1, 2, 3] and reply["losses"]["pg"] != 0.0
    assert all(
        (tmp_path / f"v{step}" / "adapter_model.safetensors").is_file() for step in (1, 2, 3)
    )
    assert not service.run_round()  # nothing ready: the trainer would block on its wake list
    redis.rpush(inbox, rl_request(1, tmp_path / "again", seed=1))  # sent again after a crash
    redis.rpush(inbox, json.dumps({"done": True}))
    drain(service)
    again = json.loads(redis.lpop(queue.RL_REPLY.format(job=rl, step=1)))  # type: ignore[arg-type]
    assert again["losses"] == reply["losses"] and not (tmp_path / "again").exists()
    with unit_of_work() as session:
        job = session.get(TrainingJob, rl)
        assert job is not None and job.status == RunStatus.succeeded
        assert [s.step for s in queue.steps_after(session, rl, 0)] == [1, 2, 3]
