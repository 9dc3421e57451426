"""No endless cycle: a run has a deadline made from its own steps, and past it the reaper fails
the run and frees the agent, whatever its heartbeat thread says; a runner that comes back
later changes nothing."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from app.core.config import get_settings
from app.core.db import unit_of_work
from app.cycles import service
from app.cycles.plan import EPISODE_TURNS, deadline_s
from app.cycles.schemas import PromotionRule
from app.cycles.stages import CyclePlan, EvaluationPlan, Job, Rollouts
from app.models import CycleRun, TrainingJob
from app.models.enums import RunStatus
from app.training import queue
from app.training.client import Examples, LoraShape, TrainingRequest
from tests.helpers import factories


def test_a_hung_cycle_fails_at_its_deadline_and_frees_its_agent(
    database_url: str, monkeypatch: pytest.MonkeyPatch, trainer_service: object
) -> None:
    """(With the suite's trainer service running, as in a full run: the training job this
    cycle holds must not be one it can claim; a first version of this test left it queued
    and the trainer failed it before the reaper could cancel it.)"""
    from app.cycles import runner

    release = threading.Event()
    late: list[RunStatus] = []
    checked: list[RunStatus | None] = []

    def hung(plan: Any, settings: Any) -> RunStatus:
        """A runner stuck in a step (its heartbeat thread beats on), that comes back later and
        writes its result as the real last step does."""
        release.wait(120)
        cycle = runner._Cycle(plan, settings, "http://engine")
        # The check between stages names what became of the run (not always "cancelled").
        checked.append(cycle.status() if cycle.cancelled() else None)
        late.append(runner._finish(cycle, RunStatus.succeeded))
        return late[-1]

    monkeypatch.setattr(
        runner,
        "plan_cycle",
        lambda session, run, settings: SimpleNamespace(
            run_id=run.id, tenant_id=run.tenant_id, job=None
        ),
    )
    monkeypatch.setattr(runner, "deadline_s", lambda plan, settings: 2.0)
    monkeypatch.setattr(runner, "_execute", hung)
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(service, "enqueue", lambda _s, *args, **_o: sent.append(args))
    with unit_of_work() as session:
        owner = factories.tenant(session)
        agent = factories.agent(session, owner, "stuck")
        run = CycleRun(tenant_id=owner.id, agent_id=agent.id, status=RunStatus.queued)
        session.add(run)
        session.flush()
        tenant_id, agent_id, run_id = owner.id, agent.id, run.id
        job = queue.enqueue(
            session, tenant_id, agent_id, "train", {"adapter_id": f"cycle-{run_id}"}, 100
        )
        # Held by a trainer elsewhere, beating: the suite's own trainer service never claims it.
        job.status, job.claimed_by, job.heartbeat_at = (
            RunStatus.running,
            "a-trainer-elsewhere",
            datetime.now(UTC),
        )
        job_id = job.id
    with ThreadPoolExecutor(1) as pool:
        runner_done = pool.submit(runner.run_cycle, tenant_id, run_id)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with unit_of_work() as session:
                    row = session.get(CycleRun, run_id)
                    assert row is not None
                    if row.deadline_at is not None:
                        break
                time.sleep(0.1)
            assert row.status == RunStatus.running and row.metrics["deadline_s"] == 2
            with unit_of_work() as session:  # before the deadline: nothing to reap
                assert service.reap(session) == 0
            time.sleep(2.5)
            with unit_of_work() as session:
                row = session.get(CycleRun, run_id)
                assert row is not None and row.status == RunStatus.running
                assert row.heartbeat_at is not None  # it looks alive: its thread beats
                assert service.reap(session) == 1
            with unit_of_work() as session:
                row = session.get(CycleRun, run_id)
                assert row is not None and row.status == RunStatus.failed
                assert row.error is not None and "deadline (2 s" in row.error, row.error
                assert row.finished_at is not None
                trained = session.get(TrainingJob, job_id)
                assert trained is not None and trained.status == RunStatus.cancelled
                # The agent is free: the next trigger queues a new cycle.
                again, created = service.start_cycle(session, tenant_id, agent_id)
                assert created and again.id != run_id
        finally:
            release.set()
        assert runner_done.result(timeout=60) == RunStatus.failed
    assert late == [RunStatus.failed]  # the late runner found the run no longer its own
    assert checked == [RunStatus.failed]
    with unit_of_work() as session:
        row = session.get(CycleRun, run_id)
        assert (
            row is not None and row.status == RunStatus.failed and "deadline" in (row.error or "")
        )
    assert [a[0] for a in sent] == ["cycle.run"]


def _plan(**evaluation: Any) -> CyclePlan:
    request = TrainingRequest(
        LoraShape(8, 8, ("q_proj",)), None, Examples(), {"sft": 1.0}, 100, 3e-4
    )
    return CyclePlan(
        tenant_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        agent_id=uuid.uuid4(),
        tenant_slug="t",
        agent_name="a",
        parent=None,
        training=request,
        evaluation=EvaluationPlan(rule=PromotionRule(), **evaluation),
        counts={},
    )


def test_the_deadline_is_made_from_the_cycles_own_steps() -> None:
    settings = get_settings()
    base = settings.cycle_deadline_base_s + settings.cycle_engine_wait_s
    step, answer = settings.cycle_deadline_step_s, settings.cycle_deadline_prompt_s
    bare = _plan()
    assert deadline_s(bare, settings) == base + 100 * step
    longer = replace(bare, training=replace(bare.training, steps=300))
    assert deadline_s(longer, settings) == base + 300 * step
    prompt = {"messages": [{"role": "user", "content": "hi"}]}
    checked = _plan(
        held_back=[prompt] * 64, near=[prompt] * 8, environment="calculator", environment_tasks=60
    )
    # Each check's prompt answered by parent and candidate; each task an episode of turns.
    assert deadline_s(checked, settings) == base + 100 * step + answer * 2 * (
        72 + EPISODE_TURNS * 60
    )
    rl = replace(
        bare,
        job=Job(
            id=uuid.uuid4(),
            method="reinforcement",
            suffix=None,
            promote=False,
            rollouts=Rollouts(grader={}, prompts=[prompt] * 10, n=4, epochs=3, measured=[]),
        ),
    )
    # 40 rollouts sampled, trained for 3 epochs of batches of 1: 120 steps, not the planned 100.
    assert deadline_s(rl, settings) == base + 120 * step + answer * 40


def test_the_default_deadline_leaves_the_slowest_measured_cycle_room() -> None:
    """A README cycle on the loaded CI machine took 385 s (docs/RELIABILITY.md); the default
    deadline for its plan (100 steps, 64 held back, 8 near, 60 environment tasks) is hours."""
    prompt = {"messages": [{"role": "user", "content": "hi"}]}
    plan = _plan(
        held_back=[prompt] * 64, near=[prompt] * 8, environment="calculator", environment_tasks=60
    )
    allowed = deadline_s(plan, get_settings())
    print(allowed)
    assert allowed >= 10 * 385
