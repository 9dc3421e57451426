"""The continual-learning loop end to end: serve, correct, learn, promote (or not), roll back."""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from app.adapters import service as registry
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.cycles import service as cycles
from app.cycles.gate import agreement_upper_bound
from app.cycles.schemas import PromotionRule, ScheduleUpdate
from app.models import AdapterVersion, Agent, CycleRun, TrainingExample
from app.sampler.launcher import EngineProcess
from tests.helpers.engine import SERVED_MODEL_NAME
from tests.helpers.figures import record
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant
from tests.helpers.learning import (
    ENV,
    answer_call,
    as_dict,
    calculator_call,
    correct,
    decided_by,
    first_call,
    golden,
    greedy,
    prompt,
    run_cycle_and_wait,
    says,
    schedule,
    train_examples,
)
from tests.helpers.worker import start_worker, wait_for, worker_env

pytestmark = pytest.mark.slow

#: Nats by which a golden answer must have been decided at every token (see its use).
GOLDEN_MARGIN = 0.5


def test_correction_is_learned_and_promoted(gateway: Gateway, worker: object) -> None:
    """A task the model answers without the calculator is corrected to use it, and learned."""
    fx = make_tenant("learner", rank=16, alpha=32)
    # The bundled model's greedy choices flip easily: on this test's 17-20 held-back prompts
    # the default schedule measured 88% agreement once. This test is about the loop (learn,
    # publish, promote, serve); the gate's own threshold is tested in test_gate.py and by the
    # README-flow test below, so it allows 85% here.
    schedule(fx, promotion_rule=PromotionRule(preserve_min=0.85))
    wrong_seed, wrong = next(
        (s, r)
        for s in range(1, 80)
        if first_call(as_dict((r := greedy(gateway, fx, prompt(s))).choices[0].message))
        != calculator_call(s)["tool_calls"][0]["function"]
    )
    # Golden examples: tasks the live version already gets right, and not by a near tie; they
    # must stay right. A learned correction with the KL term changes about 2% of untouched
    # answers, and every one measured had been decided by less than 0.3 nats at some token
    # (docs/LEARNING.md, "What a correction changes on untouched traffic"): a golden decided
    # by less would test the toy model's near ties, not the loop (one such flipped in a full
    # run, refusing the candidate on held_out 5 -> 4).
    golden_seeds, margins = [], {}
    for s in range(100, 200):
        answer = greedy(gateway, fx, prompt(s), logprobs=True, top_logprobs=2)
        right = (
            first_call(as_dict(answer.choices[0].message))
            == calculator_call(s)["tool_calls"][0]["function"]
        )
        if s != wrong_seed and right:
            margins[s] = decided_by(answer)
            if margins[s] >= GOLDEN_MARGIN:
                golden_seeds.append(s)
        if len(golden_seeds) == 5:
            break
    # Enough for the held-out signal to count (min_examples).
    assert len(golden_seeds) == 5, margins
    golden(gateway, fx, golden_seeds)
    # No anchor examples: the KL term keeps the agent's untouched traffic (the scan above).
    target = calculator_call(wrong_seed)
    correct(gateway, fx, wrong.id, target)
    wait_for(lambda: train_examples(fx) >= 2)

    run = run_cycle_and_wait(fx)
    assert run.status == "succeeded", (run.error, run.metrics["decision"], run.metrics["signals"])
    assert (
        run.metrics["new_candidate"] == 1.0
        and run.metrics["eval_candidate"] >= run.metrics["eval_live"]
    )
    after = greedy(gateway, fx, prompt(wrong_seed))
    with unit_of_work() as session:
        agent = session.get(Agent, fx.agent.id)
        live = session.get(AdapterVersion, agent.live_version_id)  # type: ignore[union-attr]
        assert live is not None and live.id == run.candidate_version_id and registry.verify(live)
        name = registry.adapter_name(fx.tenant.slug, fx.agent.name, live.number)
    assert after.system_fingerprint == name
    assert first_call(as_dict(after.choices[0].message)) == target["tool_calls"][0]["function"] | {
        "arguments": after.choices[0].message.tool_calls[0].function.arguments  # type: ignore[index]
    }
    produced = json.loads(after.choices[0].message.tool_calls[0].function.arguments)  # type: ignore[index]
    assert produced == json.loads(target["tool_calls"][0]["function"]["arguments"])
    targets = _golden_targets(fx)
    for seed in golden_seeds:  # the golden examples did not regress
        got = first_call(as_dict(greedy(gateway, fx, prompt(seed)).choices[0].message))
        assert got is not None and got["name"] == targets[seed]["name"]
        assert json.loads(got["arguments"]) == json.loads(targets[seed]["arguments"])


def _golden_targets(fx: TenantFixture) -> dict[int, dict]:
    with unit_of_work() as session:
        rows = session.scalars(
            select(TrainingExample).where(
                TrainingExample.agent_id == fx.agent.id, TrainingExample.split == "eval"
            )
        ).all()
        by_prompt = {
            json.dumps(r.payload["messages"][:-1]): r.payload["messages"][-1]["tool_calls"][0][
                "function"
            ]
            for r in rows
        }
    return {
        s: by_prompt[json.dumps(prompt(s))]
        for s in range(200)
        if json.dumps(prompt(s)) in by_prompt
    }


def test_regressing_candidate_is_not_promoted(gateway: Gateway, worker: object) -> None:
    fx = make_tenant("guarded", rank=16, alpha=32)
    # A candidate made to regress: a strong step size and no KL term.
    schedule(
        fx,
        learning_rate=2e-3,
        kl_coef=0.0,
        promotion_rule=PromotionRule(max_regression=0.0, require_improvement=False),
    )
    golden(gateway, fx, [31, 32, 33, 34, 35])  # the live answer to prompt 31 is golden ...
    wrong = greedy(gateway, fx, prompt(31))
    correct(gateway, fx, wrong.id, answer_call("-1"))  # ... and a correction contradicts it
    wait_for(lambda: train_examples(fx) >= 2)
    before = greedy(gateway, fx, prompt(31))
    run = run_cycle_and_wait(fx)
    assert run.status == "rejected", run.metrics
    assert "fell" in run.metrics["decision"]
    with unit_of_work() as session:
        candidate = session.get(AdapterVersion, run.candidate_version_id)
        assert candidate is not None and candidate.status == "rejected"
        assert session.get(Agent, fx.agent.id).live_version_id is None  # type: ignore[union-attr]
    after = greedy(gateway, fx, prompt(31))
    assert after.system_fingerprint == before.system_fingerprint
    assert as_dict(after.choices[0].message) | {"tool_calls": None} == as_dict(
        before.choices[0].message
    ) | {"tool_calls": None}


def test_rollback_restores_previous_outputs(gateway: Gateway, worker: object) -> None:
    fx = make_tenant("rolling", rank=16, alpha=32)
    # This test is about rollback, not the gate: a rule that promotes on any evidence.
    lenient = PromotionRule(max_regression=1.0, require_improvement=False, preserve_min=0.0)
    schedule(fx, promotion_rule=lenient)
    golden(gateway, fx, [101, 102, 103, 104, 105])  # evidence for the gate
    _traffic(gateway, fx, 24, seed=99)  # untouched traffic: what the KL term keeps
    outputs = {}
    for seed, value in ((41, "111"), (42, "222")):
        first = greedy(gateway, fx, prompt(seed))
        correct(gateway, fx, first.id, answer_call(value))
        run = run_cycle_and_wait(fx)
        assert run.status == "succeeded", str(run.metrics)
        outputs[value] = [
            as_dict(greedy(gateway, fx, prompt(s)).choices[0].message) for s in (41, 42, 43)
        ]
    with unit_of_work() as session:
        version = registry.rollback(session, fx.tenant.id, fx.agent.id)
        number = version.number
    restored = [as_dict(greedy(gateway, fx, prompt(s)).choices[0].message) for s in (41, 42, 43)]
    strip = lambda m: {**m, "tool_calls": [c["function"] for c in m.get("tool_calls") or []]}  # noqa: E731
    assert [strip(m) for m in restored] == [strip(m) for m in outputs["111"]]
    assert greedy(gateway, fx, prompt(41)).system_fingerprint.endswith(f"@v{number}")  # type: ignore[union-attr]


def test_worker_killed_during_cycle_resumes_cleanly(
    gateway: Gateway, engine, database_url: str, tmp_path: Path, worker: object
) -> None:  # type: ignore[no-untyped-def]
    """kill -9 the worker mid-training: the reaper hands the cycle to a new worker, which ends it.

    The cycle goes to a queue of its own so that the session's worker does not take it."""
    from app.models import CycleRun as Run
    from app.runtime.worker import celery_app

    fx = make_tenant("crashy")
    schedule(fx, steps=300, learning_rate=1e-3)
    first = greedy(gateway, fx, prompt(51))
    correct(gateway, fx, first.id, answer_call("5151"))
    wait_for(lambda: train_examples(fx) >= 2)
    examples_before = train_examples(fx)
    env = worker_env(database_url, engine.url, get_settings().data_dir)
    queue = f"crash-{uuid.uuid4().hex[:6]}"
    proc = start_worker(env, tmp_path / "worker.log", queue=queue)
    with unit_of_work() as session:
        run = Run(id=uuid.uuid4(), tenant_id=fx.tenant.id, agent_id=fx.agent.id, trigger="manual")
        session.add(run)
        run_id = run.id
    celery_app.send_task("cycle.run", args=[str(fx.tenant.id), str(run_id)], queue=queue)

    def progress() -> float:
        with unit_of_work() as session:
            return cycles.get_run(session, fx.tenant.id, run_id).progress

    try:
        wait_for(lambda: progress() > 0.02, timeout_s=180)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    import time

    time.sleep(2)
    with unit_of_work() as session:  # what beat's cycle.tick does, with a short stale period
        assert cycles.reap(session, stale_after_s=1, queue=queue) == 1
    replacement = start_worker(env, tmp_path / "worker2.log", queue=queue)
    try:

        def done() -> CycleRun | None:
            with unit_of_work() as session:
                row = cycles.get_run(session, fx.tenant.id, run_id)
                session.expunge(row)
                return row if row.status not in ("queued", "running") else None

        finished = wait_for(done, timeout_s=900, interval_s=1)
    finally:
        replacement.terminate()
        replacement.wait(20)
    assert finished.status in ("succeeded", "rejected", "needs_evaluation"), (
        finished.status,
        finished.error,
    )
    assert finished.metrics["resumed"] == 1
    assert train_examples(fx) == examples_before
    with unit_of_work() as session:
        versions = session.scalars(
            select(AdapterVersion).where(AdapterVersion.agent_id == fx.agent.id)
        ).all()
        failing = sum(not registry.verify(v) for v in versions)
        assert len(versions) == 1 and failing == 0
        assert versions[0].id == finished.candidate_version_id
        # The dead worker's training job was cancelled when the new attempt started its own,
        # or (a correction learned in a few steps stops early) had already ended: two jobs of
        # one adapter never train at once.
        from app.models import TrainingJob

        jobs = session.scalars(
            select(TrainingJob)
            .where(TrainingJob.agent_id == fx.agent.id)
            .order_by(TrainingJob.created_at)
        ).all()
        assert len(jobs) == 2 and jobs[1].status == "succeeded", [j.status for j in jobs]
        if jobs[0].status == "succeeded":
            assert jobs[0].finished_at is not None and jobs[1].started_at is not None
            assert jobs[0].finished_at <= jobs[1].started_at
        else:
            assert jobs[0].status == "cancelled"
    record(
        "fault_worker_kill9_cycle",
        {
            "fault": "kill -9 of the Celery worker during a learning cycle",
            "cycle_final_status": str(finished.status),
            "resumed": finished.metrics["resumed"],
            "examples_lost": examples_before - train_examples(fx),
            "versions_published": len(versions),
            "versions_failing_checksum": failing,
        },
    )


# ---- learning without forgetting ---------------------------------------------------------------
README_PROMPT = "Leo had 96 apples and gave away 4. How many apples are left?"
NEAR = ["Leo had 97 apples and gave away 5. How many apples are left?", "What is 13 times 5?"]


def _with_environment(fx: TenantFixture) -> None:
    from app.agents.service import update_agent

    with unit_of_work() as session:
        agent = session.get(Agent, fx.agent.id)
        assert agent is not None
        update_agent(session, agent, environment="calculator")


def _ask(gateway: Gateway, fx: TenantFixture, text: str):  # type: ignore[no-untyped-def]
    messages = [{"role": "system", "content": ENV.system_prompt}, {"role": "user", "content": text}]
    return greedy(gateway, fx, messages)


def _gradable(brief: str) -> bool:
    """Whether the calculator environment grades an answer, as the gate's report shows it
    (`name({json arguments})` for calls, else the text): every call is graded (one it could
    not run is wrong), and text only when it is a number."""
    from trainer.envs.calculator import parse_answer

    return re.match(r"[A-Za-z_]\w*\(", brief) is not None or parse_answer(brief) is not None


def _traffic(gateway: Gateway, fx: TenantFixture, n: int, seed: int) -> None:
    """Untouched traffic: questions nobody gives feedback on."""
    for task in ENV.tasks("train", n, seed=seed):
        greedy(gateway, fx, ENV.initial_messages(task))
    gateway.drain()


def _accuracy(base_url: str, key: str, model: str, tasks: int = 200) -> float:
    """Greedy accuracy of ``model`` on held-out environment tasks, measured by the test itself
    (not the gate's figure)."""
    import asyncio

    import openai

    from trainer.envs.runner import run_episodes

    client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)
    episodes = asyncio.run(
        run_episodes(
            client, model, ENV, ENV.tasks("test", tasks, seed=1), temperature=0.0, token_data=False
        )
    )
    return sum(e.correct for e in episodes) / len(episodes)


@pytest.mark.timeout(1500)
def test_readme_flow_never_breaks_the_agent(
    gateway: Gateway, worker: object, engine: EngineProcess
) -> None:
    """One correction, one cycle with the default schedule, through the openai client, as the
    README tells it. The candidate is promoted, the corrected prompt is answered as
    corrected, held-out environment accuracy did not fall by more than a point and the
    preservation bound allows 95% (the gate's signals), nearby prompts never come back
    '60', and an independent number holds: accuracy on 200 held-out tasks the test measures
    itself, against the base model's. (A refused candidate, and the parent serving on, is
    `test_regressing_candidate_is_not_promoted`; how often this flow promotes and learns is
    measured by bench/continual.py, `readme`.)"""
    fx = make_tenant("readme", rank=16, alpha=32)
    _with_environment(fx)
    schedule_defaults = ScheduleUpdate(promotion_rule=PromotionRule(environment_tasks=60))
    with unit_of_work() as session:
        cycles.update_schedule(session, fx.tenant.id, fx.agent.id, schedule_defaults)
    # Sixty untouched chats: a share is held back for the preservation check (10 in a run of
    # this test; 6 to 8 with thirty), enough that one changed answer does not refuse alone.
    _traffic(gateway, fx, 60, seed=77)
    wrong = _ask(gateway, fx, README_PROMPT)
    target = {"name": "calculator", "arguments": {"expression": "96-4"}}
    assert first_call(as_dict(wrong.choices[0].message)) != target
    for text in NEAR:  # asked before: they are held-back traffic too
        _ask(gateway, fx, text)
    correct(
        gateway,
        fx,
        wrong.id,
        {
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "calculator",
                        "arguments": json.dumps(target["arguments"]),
                    },
                }
            ],
        },
    )
    wait_for(lambda: train_examples(fx) >= 2)
    run = run_cycle_and_wait(fx)
    signals = run.metrics["signals"]
    env, kept = signals["environment"], signals["preservation"]
    # The gate had evidence to decide on: the environment's 60 tasks always; the held-back
    # untouched prompts count too when five or more of the served ones were logged in time.
    assert env["n"] == 60, signals
    print({"preservation": kept})
    if kept["n"]:  # the traffic is the environment's tasks: the environment grades them
        # Every prompt the environment poses (the near prompts asked above are not its
        # templates) whose two answers are calls or numbers is graded; prose is not.
        assert kept["graded"] >= 1, kept
        for change in kept["changed"]:
            posed = ENV.task_of([{"role": "user", "content": change["prompt"]}]) is not None
            both = _gradable(change["parent"]) and _gradable(change["candidate"])
            assert (change["kind"] is not None) == (posed and both), change
    print({"status": run.status, "decision": run.metrics.get("decision"), "gate": env})
    assert run.status == "succeeded", run.metrics.get("decision")
    assert signals["corrections"] == {"n": 1, "before": 0.0, "after": 1.0}
    assert env["after"] >= env["before"] - 0.01, signals
    # Promoted only if preservation is not shown below 95% (the gate's confidence bound,
    # recorded with the signal for the CLI and the UI).
    if kept["agreement"] is not None:  # None: no untouched prompt was logged in time
        assert kept["upper_bound"] == agreement_upper_bound(kept["agreement"], kept["n"])
        assert kept["upper_bound"] >= 0.95, signals
    after = _ask(gateway, fx, README_PROMPT)
    assert after.system_fingerprint == f"{fx.tenant.slug}/{fx.agent.name}@v1"
    got = first_call(as_dict(after.choices[0].message))
    assert got is not None and got["name"] == "calculator"
    assert json.loads(got["arguments"]) == target["arguments"]
    for text in NEAR:  # never "60", as text or in a tool call
        assert not says(as_dict(_ask(gateway, fx, text).choices[0].message), "60"), text
    # An independent number: what serves now against the base model on 200 held-out tasks
    # (other seeds than the gate's 60), both measured here. Over 15 runs of this flow the
    # promoted version was never below the base (bench/results/continual.json, `readme*`);
    # two points of 200 is the room allowed for greedy ties.
    served = _accuracy(gateway.api_base, fx.key, fx.agent.name)
    base = _accuracy(engine.api_base, "unused", SERVED_MODEL_NAME)
    print({"status": run.status, "served": served, "base": base, "gate": env})
    assert served >= base - 0.02, (served, base, signals)


@pytest.mark.timeout(1500)
def test_nothing_to_evaluate_ends_needs_evaluation_and_force_is_recorded(
    gateway: Gateway, worker: object
) -> None:
    """A fresh agent (no environment, no traffic, no held-out examples): its first cycle
    promotes nothing; promoting the candidate takes force, and the force is recorded."""
    from app.core.errors import Conflict

    fx = make_tenant("fresh")
    first = greedy(gateway, fx, prompt(61))
    correct(gateway, fx, first.id, answer_call("6161"))
    wait_for(lambda: train_examples(fx) >= 2)
    run = run_cycle_and_wait(fx)
    assert run.status == "needs_evaluation", (run.status, run.metrics.get("decision"))
    assert "--split eval" in run.metrics["decision"]
    with unit_of_work() as session:
        assert session.get(Agent, fx.agent.id).live_version_id is None  # type: ignore[union-attr]
        candidate = session.get(AdapterVersion, run.candidate_version_id)
        assert candidate is not None and candidate.status == "candidate"
        assert candidate.metrics["gate"]["verdict"] == "needs_evaluation"
    with unit_of_work() as session, pytest.raises(Conflict, match="force"):
        registry.promote(session, fx.tenant.id, run.candidate_version_id, force=False, by="admin")  # type: ignore[arg-type]
    # The CLI: a readable refusal without --force, then the forced promotion, recorded and listed.
    from click.testing import CliRunner

    from app.cli import main as cli

    args = ["--tenant", fx.tenant.slug]
    refused = CliRunner().invoke(cli, ["adapter", "promote", "fresh", "1", *args])
    assert refused.exit_code == 1 and "did not pass the promotion gate" in refused.output
    forced = CliRunner().invoke(cli, ["adapter", "promote", "fresh", "1", "--force", *args])
    assert forced.exit_code == 0, forced.output
    assert "forced over the gate's verdict: needs_evaluation" in forced.output
    listed = CliRunner().invoke(cli, ["adapter", "list", "fresh", *args])
    assert "v1" in listed.output and "gate needs_evaluation" in listed.output
    assert "forced by cli" in listed.output
    with unit_of_work() as session:
        live = session.get(AdapterVersion, run.candidate_version_id)
        assert live is not None and live.status == "live"
        assert live.metrics["forced"]["by"] == "cli"
        assert live.metrics["forced"]["verdict"] == "needs_evaluation"


@pytest.mark.timeout(1500)
def test_a_candidate_trained_to_forget_is_refused(gateway: Gateway, worker: object) -> None:
    """10x learning rate, no KL and no replay, on corrections that all say "60" (the answer
    that once took over every question): the gate refuses it and names the signal."""
    fx = make_tenant("forgetful", rank=16, alpha=32)
    _with_environment(fx)
    defaults = ScheduleUpdate()
    schedule(
        fx,
        learning_rate=defaults.learning_rate * 10,
        kl_coef=0.0,
        replay_share=0.0,
        steps=defaults.steps,
        promotion_rule=PromotionRule(environment_tasks=60),
    )
    _traffic(gateway, fx, 30, seed=88)
    for seed in (3, 4, 5, 6, 7):
        reply = greedy(gateway, fx, prompt(seed))
        correct(gateway, fx, reply.id, answer_call("60"))
    wait_for(lambda: train_examples(fx) >= 8)
    run = run_cycle_and_wait(fx)
    assert run.status == "rejected", (run.metrics["decision"], run.metrics["signals"])
    # Corrections that all say "60" and a candidate that answers 60 everywhere: the copies
    # signal (checked before preservation) sees it first; any of these names it.
    assert run.metrics["failed_signal"] in ("copies", "preservation", "environment", "held_out")
    assert run.metrics["decision"].startswith(run.metrics["failed_signal"])
    with unit_of_work() as session:
        assert session.get(Agent, fx.agent.id).live_version_id is None  # type: ignore[union-attr]
