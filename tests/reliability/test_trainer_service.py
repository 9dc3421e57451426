"""The trainer service: jobs from the durable queue, per-step progress, kill -9 and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import normalise_url, unit_of_work
from app.models import Tenant, TrainingJob, TrainingJobStep
from app.models.enums import RunStatus
from app.runtime import migrate
from app.training import client as trainer_client
from app.training import queue
from tests.helpers import factories
from tests.helpers.database import create_database, drop_database
from tests.helpers.figures import record
from tests.helpers.worker import start_trainer, stop, wait_for, worker_env

pytestmark = pytest.mark.slow

LORA = trainer_client.LoraShape(8, 16, ("q_proj", "v_proj"))
EXAMPLES = [
    {
        "messages": [
            {"role": "user", "content": f"What is {a} plus {b}?"},
            {"role": "assistant", "content": f"The answer is {a + b}."},
        ]
    }
    for a, b in [(2, 3), (17, 25), (40, 2), (9, 9)]
]


def _payload(write_to: Path, steps: int) -> dict[str, object]:
    return {
        "adapter_id": "test",
        "lora": {
            "rank": LORA.rank,
            "alpha": LORA.alpha,
            "target_modules": list(LORA.target_modules),
        },
        "parent_dir": None,
        "examples": {"sft": EXAMPLES},
        "mixture": {"sft": 1.0},
        "steps": steps,
        "lr": 5e-3,
        "write_to": str(write_to),
    }


def test_cycle_training_runs_on_the_service(
    trainer_service: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """train_adapter enqueues a job; the service trains it, records every step, writes files."""
    with unit_of_work() as session:
        owner = factories.tenant(session)
        agent = factories.agent(session, owner)
        tenant_id, agent_id = owner.id, agent.id
    seen: list[int] = []
    request = trainer_client.TrainingRequest(
        LORA, None, trainer_client.Examples(sft=EXAMPLES), {"sft": 1.0}, 8, 5e-3
    )
    history = trainer_client.train_adapter(
        "cycle-test",
        request,
        tenant_id=tenant_id,
        agent_id=agent_id,
        write_to=tmp_path / "out",
        on_step=lambda s: seen.append(s.step),
    )
    assert [s.step for s in history] == list(range(1, 9)) == seen
    assert history[-1].losses["sft"] < 0.8 * history[0].losses["sft"]
    weights = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for k, t in weights.items() if "lora_B" in k)
    with unit_of_work() as session:
        job = session.scalars(select(TrainingJob).where(TrainingJob.agent_id == agent_id)).one()
        assert (job.status, job.steps_done, job.attempts) == (RunStatus.succeeded, 8, 1)
        assert job.claimed_by == "session-trainer"


def test_failed_job_reports_its_error(
    trainer_service: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """A job the trainer cannot run fails with a readable error; nothing is written."""
    with unit_of_work() as session:
        owner = factories.tenant(session)
        tenant_id = owner.id
    bad = trainer_client.LoraShape(8, 16, ("no_such_module",))
    with pytest.raises(trainer_client.TrainingFailed, match="no_such_module"):
        trainer_client.train_adapter(
            "bad",
            trainer_client.TrainingRequest(
                bad, None, trainer_client.Examples(sft=EXAMPLES), {"sft": 1.0}, 2, 1e-3
            ),
            tenant_id=tenant_id,
            agent_id=None,
            write_to=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


@pytest.fixture
def own_queue(tmp_path: Path) -> Iterator[tuple[str, sessionmaker[Session], uuid.UUID]]:
    """A database of its own, so that no other trainer of the session claims these jobs."""
    url = create_database()
    migrate.upgrade(url)
    engine = create_engine(normalise_url(url))
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions.begin() as session:
        owner = Tenant(slug=f"t-{uuid.uuid4().hex[:8]}", name="crash")
        session.add(owner)
        session.flush()
        tenant_id = owner.id
    yield url, sessions, tenant_id
    engine.dispose()
    drop_database(url)


def _crashy_trainer(url: str, tmp_path: Path, step_delay_s: float) -> tuple[dict[str, str], Path]:
    """Environment and log of a trainer on the queue `url`, whose steps are slowed so that a
    kill -9 lands mid-job."""
    env = worker_env(url, "http://127.0.0.1:9", tmp_path / "data")
    env.update(CLORA_TRAINER_ID="crashy", CLORA_TRAINER_STEP_DELAY_S=str(step_delay_s))
    return env, tmp_path / "trainer.log"


def _enqueue(sessions: sessionmaker[Session], tenant_id: uuid.UUID, out: Path) -> uuid.UUID:
    with sessions.begin() as session:
        return queue.enqueue(session, tenant_id, None, "train", _payload(out, 6), 6).id


def _enqueue_three(
    sessions: sessionmaker[Session], tenant_id: uuid.UUID, out: Path
) -> list[uuid.UUID]:
    """Three different jobs (own seed and learning rate) in one transaction, so one trainer
    claims them together and their steps share rounds and passes from the first."""
    with sessions.begin() as session:
        ids = []
        for i in range(3):
            payload = {**_payload(out / f"job{i}", 6), "seed": i + 1, "lr": 5e-3 * (i + 1)}
            ids.append(queue.enqueue(session, tenant_id, None, "train", payload, 6).id)
        return ids


def _job(sessions: sessionmaker[Session], job_id: uuid.UUID) -> TrainingJob:
    with sessions() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        return job


def test_kill_9_mid_job_resumes_to_the_same_result(
    own_queue: tuple[str, sessionmaker[Session], uuid.UUID], tmp_path: Path
) -> None:
    """kill -9 the trainer mid-job; restarted, it resumes from the checkpoint, applies no step
    twice, records each step once, and ends bit-identical to an uninterrupted run."""
    url, sessions, tenant_id = own_queue
    env, log = _crashy_trainer(url, tmp_path, 0.5)

    proc = start_trainer(env, log)
    reference = _enqueue(sessions, tenant_id, tmp_path / "reference")
    wait_for(lambda: _job(sessions, reference).status == RunStatus.succeeded, 120)

    crashed = _enqueue(sessions, tenant_id, tmp_path / "crashed")
    wait_for(lambda: _job(sessions, crashed).steps_done >= 3, 120, 0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    job = _job(sessions, crashed)
    assert job.status == RunStatus.running and 3 <= job.steps_done < 6

    restarted = time.monotonic()
    proc = start_trainer(env, log)
    done_before = job.steps_done
    try:
        wait_for(lambda: _job(sessions, crashed).steps_done > done_before, 120, 0.05)
        recovery = time.monotonic() - restarted
        wait_for(lambda: _job(sessions, crashed).status == RunStatus.succeeded, 120)
    finally:
        stop(proc)
    job = _job(sessions, crashed)
    assert (job.steps_done, job.attempts) == (6, 2)
    with sessions() as session:
        rows = session.execute(
            select(TrainingJobStep.step, func.count())
            .where(TrainingJobStep.job_id == crashed)
            .group_by(TrainingJobStep.step)
            .order_by(TrainingJobStep.step)
        ).all()
    assert [tuple(r) for r in rows] == [(s, 1) for s in range(1, 7)]
    steps_lost = 6 - len(rows)
    applied_twice = sum(n - 1 for _, n in rows)
    assert "resumes at step" in log.read_text()
    expected = load_file(tmp_path / "reference" / "adapter_model.safetensors")
    got = load_file(tmp_path / "crashed" / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    equal = all(torch.equal(expected[key], got[key]) for key in expected)
    assert equal, [k for k in expected if not torch.equal(expected[k], got[k])]
    # The job's checkpoint folder is gone once it is done.
    assert not (tmp_path / "data" / "trainer" / "jobs" / str(crashed)).exists()
    record(
        "fault_trainer_kill9",
        {
            "fault": "kill -9 of the trainer service mid-job (6 steps, killed after step 3+)",
            "steps": 6,
            "steps_lost": steps_lost,
            "steps_applied_twice": applied_twice,
            "attempts": job.attempts,
            "weights_equal_uninterrupted": equal,
            "recovery_s": round(recovery, 2),
        },
    )


def _step_rows(sessions: sessionmaker[Session], job_id: uuid.UUID) -> list[TrainingJobStep]:
    with sessions() as session:
        return list(
            session.scalars(
                select(TrainingJobStep)
                .where(TrainingJobStep.job_id == job_id)
                .order_by(TrainingJobStep.step)
            )
        )


def test_kill_9_with_three_jobs_sharing_passes_resumes_each_bit_identically(
    own_queue: tuple[str, sessionmaker[Session], uuid.UUID], tmp_path: Path
) -> None:
    """Three jobs train in shared rounds (their rows in the same passes). kill -9 the trainer
    mid-round; restarted, every job resumes from its own last checkpoint, each step is recorded
    once, and each job's adapter ends bit-identical to the same three jobs run uninterrupted."""
    url, sessions, tenant_id = own_queue
    env, log = _crashy_trainer(url, tmp_path, 0.3)

    proc = start_trainer(env, log)
    reference = _enqueue_three(sessions, tenant_id, tmp_path / "reference")
    wait_for(lambda: all(_job(sessions, j).status == RunStatus.succeeded for j in reference), 180)
    for job_id in reference:  # every step of every job shared its passes with both others
        rows = _step_rows(sessions, job_id)
        assert [r.metrics["round_jobs"] for r in rows] == [3] * 6
        assert all(r.metrics["shared_passes"] == r.metrics["passes"] > 0 for r in rows)

    crashed = _enqueue_three(sessions, tenant_id, tmp_path / "crashed")
    wait_for(lambda: _job(sessions, crashed[0]).steps_done >= 3, 180, 0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {j: _job(sessions, j).steps_done for j in crashed}
    assert all(_job(sessions, j).status == RunStatus.running for j in crashed)
    assert all(2 <= n < 6 for n in done_before.values()), done_before

    restarted = time.monotonic()
    proc = start_trainer(env, log)
    try:
        wait_for(lambda: any(_job(sessions, j).steps_done > done_before[j] for j in crashed), 180)
        recovery = time.monotonic() - restarted
        wait_for(lambda: all(_job(sessions, j).status == RunStatus.succeeded for j in crashed), 180)
    finally:
        stop(proc)
    assert log.read_text().count("resumes at step") >= 3
    lost = twice = 0
    equal = True
    for i, job_id in enumerate(crashed):
        job = _job(sessions, job_id)
        assert (job.steps_done, job.attempts) == (6, 2)
        steps = [r.step for r in _step_rows(sessions, job_id)]
        assert steps == list(range(1, 7))  # each step recorded once (the primary key allows one)
        lost += 6 - len(set(steps))
        twice += len(steps) - len(set(steps))
        expected = load_file(tmp_path / "reference" / f"job{i}" / "adapter_model.safetensors")
        got = load_file(tmp_path / "crashed" / f"job{i}" / "adapter_model.safetensors")
        assert expected.keys() == got.keys()
        differ = [k for k in expected if not torch.equal(expected[k], got[k])]
        assert not differ, (i, differ)
        equal = equal and not differ
        assert not (tmp_path / "data" / "trainer" / "jobs" / str(job_id)).exists()
    # The three adapters really differ: equal files would not show that each job kept its own.
    first = load_file(tmp_path / "crashed" / "job0" / "adapter_model.safetensors")
    second = load_file(tmp_path / "crashed" / "job1" / "adapter_model.safetensors")
    assert any(not torch.equal(first[k], second[k]) for k in first)
    record(
        "fault_trainer_kill9_shared",
        {
            "fault": "kill -9 of the trainer service while 3 jobs share rounds and passes "
            f"(6 steps each; killed at steps {sorted(done_before.values())})",
            "steps": 18,
            "steps_lost": lost,
            "steps_applied_twice": twice,
            "weights_equal_uninterrupted": equal,
            "recovery_s": round(recovery, 2),
        },
    )
