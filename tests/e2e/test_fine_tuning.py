"""Fine-tuning jobs end to end with the official `openai` SDK, unmodified: upload, create,
follow the events until done, chat with `fine_tuned_model`; a DPO job whose agent keeps its
versions as candidates; cancelling a running job; a reinforcement job with the calculator
environment as its grader. Jobs run as learning cycles on the real worker, trainer service
and engine."""

from __future__ import annotations

import io
import json
import time

import openai
import pytest

from app.core.db import unit_of_work
from app.cycles.schemas import PromotionRule
from app.models import AdapterVersion, Agent
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant
from tests.helpers.learning import (
    ENV,
    TOOLS,
    as_dict,
    calculator_call,
    first_call,
    greedy,
    prompt,
    schedule,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def upload(client: openai.OpenAI, lines: list[dict]) -> str:
    content = "\n".join(json.dumps(line) for line in lines).encode()
    return client.files.create(file=("data.jsonl", io.BytesIO(content)), purpose="fine-tune").id


def follow(client: openai.OpenAI, job_id: str, timeout_s: float = 900) -> tuple[object, list]:
    """Poll the job as a user's script does until it ends; (job, events oldest first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            events = list(client.fine_tuning.jobs.list_events(job_id, limit=100))
            return job, events[::-1]
        time.sleep(2)
    raise AssertionError(f"job {job_id} did not end in {timeout_s} s")


def fixed(seed: int) -> dict:
    """The right first step of a task, as an assistant message."""
    return {"role": "assistant", **calculator_call(seed)}


def wrong_seeds(gateway: Gateway, fx: TenantFixture, n: int) -> list[int]:
    """Tasks whose first step the agent gets wrong now (not the calculator with the task's
    expression)."""
    return [
        s
        for s in range(1, 60)
        if first_call(as_dict(greedy(gateway, fx, prompt(s)).choices[0].message))
        != calculator_call(s)["tool_calls"][0]["function"]
    ][:n]


def lenient_gate(fx: TenantFixture, preserve_min: float = 0.8) -> None:
    """The scan for wrong answers is the agent's untouched traffic, and the bundled model's
    greedy choices on it flip easily (82% to 100% agreement measured across runs of the same
    job). These tests are about the API and the loop; the gate's own thresholds are tested in
    tests/unit/cycles/test_gate.py and tests/e2e/test_learning_loop.py, so they allow 80%."""
    schedule(fx, promotion_rule=PromotionRule(preserve_min=preserve_min))


def calls(gateway: Gateway, fx: TenantFixture, seed: int, model: str) -> dict | None:
    reply = greedy(gateway, fx, prompt(seed), model=model)
    return first_call(as_dict(reply.choices[0].message))


def test_a_supervised_job_trains_a_version_the_agent_serves(
    gateway: Gateway, worker: object
) -> None:
    fx = make_tenant("tuned", rank=16, alpha=32)
    lenient_gate(fx)
    client = fx.client(gateway)
    seeds = wrong_seeds(gateway, fx, 5)
    assert len(seeds) == 5
    lines = [{"messages": [*prompt(s), fixed(s)], "tools": TOOLS} for s in seeds]
    training = upload(client, lines)
    job = client.fine_tuning.jobs.create(
        model="tuned",
        training_file=training,
        validation_file=upload(client, lines),  # 5 lines: enough for the gate to count
        suffix="calc",
        seed=3,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 50, "batch_size": 5}},
        },
    )
    job, events = follow(client, job.id)
    messages = [e.message for e in events]
    assert job.status == "succeeded", (job.error, messages[-4:])
    assert job.fine_tuned_model == "tuned@v1" and job.trained_tokens and job.finished_at
    steps = [e for e in events if e.type == "metrics" and "step" in (e.data or {})]
    assert [e.data["step"] for e in steps] == list(range(1, 51))
    assert steps[-1].data["train_loss"] < steps[0].data["train_loss"]
    assert any(m.startswith("New fine-tuned model created: tuned@v1") for m in messages)
    assert messages[-1] == "The job has successfully completed"
    # The trained behaviour, served by the name the job returned and by the agent's name
    # (the gate passed, and the agent promotes fine-tuned versions by default): none of the
    # five was answered with its calculator call before, most of them are now, as many as the
    # gate measured on the validation file.
    # The responses and completions endpoints take the name too.
    response = client.responses.create(
        model=job.fine_tuned_model, input="What is 2 plus 3?", max_output_tokens=16
    )
    assert response.model == "tuned@v1" and response.status in ("completed", "incomplete")
    text = client.completions.create(model=job.fine_tuned_model, prompt="2 plus 3 is", max_tokens=4)
    assert text.model == "tuned@v1" and text.choices[0].finish_reason in ("stop", "length")
    (checkpoint,) = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoint.fine_tuned_model_checkpoint == "tuned@v1" and checkpoint.step_number == 50
    measured = checkpoint.metrics.model_dump()  # type: ignore[union-attr]
    assert measured["validation_before"] == 0.0 and measured["validation_after"] >= 0.8
    for model in (job.fine_tuned_model, "tuned"):
        learned = [
            calls(gateway, fx, s, model) == calculator_call(s)["tool_calls"][0]["function"]
            for s in seeds
        ]
        assert sum(learned) == round(measured["validation_after"] * 5), learned
    with unit_of_work() as session:
        version = session.get(AdapterVersion, session.get(Agent, fx.agent.id).live_version_id)  # type: ignore[union-attr]
        assert version is not None and version.metrics["fine_tuning"]["suffix"] == "calc"


def test_a_dpo_job_leaves_a_candidate_when_the_agent_says_so(
    gateway: Gateway, worker: object
) -> None:
    from app.agents.service import update_agent

    fx = make_tenant("prefers", rank=16, alpha=32)
    # 40 epochs at 3x the learning rate move untouched answers more than the SFT job does: a
    # full run saw 62.5% agreement (n=16) where the same job alone passed 80%. This test is
    # about what a passing DPO job leaves behind, not about the gate's threshold.
    lenient_gate(fx, preserve_min=0.5)
    with unit_of_work() as session:
        update_agent(session, session.get(Agent, fx.agent.id), fine_tuning_promotes=False)  # type: ignore[arg-type]
    client = fx.client(gateway)
    seeds = wrong_seeds(gateway, fx, 5)
    pairs = [
        {
            "input": {"messages": prompt(s), "tools": TOOLS},
            "preferred_output": [fixed(s)],
            "non_preferred_output": [as_dict(greedy(gateway, fx, prompt(s)).choices[0].message)],
        }
        for s in seeds
    ]
    job = client.fine_tuning.jobs.create(
        model="prefers",
        training_file=upload(client, pairs),
        validation_file=upload(client, pairs),
        method={
            "type": "dpo",
            "dpo": {
                "hyperparameters": {
                    "n_epochs": 40,
                    "batch_size": 5,
                    "beta": 0.5,
                    "learning_rate_multiplier": 3,
                }
            },
        },
    )
    job, events = follow(client, job.id)
    assert job.status == "succeeded", (job.error, [e.message for e in events][-4:])
    assert job.fine_tuned_model == "prefers@v1"
    losses = [e.data["losses"]["dpo"] for e in events if (e.data or {}).get("losses")]
    assert losses[-1] < losses[0]
    with unit_of_work() as session:
        agent = session.get(Agent, fx.agent.id)
        assert agent is not None and agent.live_version_id is None  # left a candidate
    assert any("stays a candidate" in e.message for e in events)
    preferred = sum(
        calls(gateway, fx, s, "prefers@v1") == calculator_call(s)["tool_calls"][0]["function"]
        for s in seeds
    )
    assert preferred >= 3  # the validation signal improved, so most of them switched


def test_a_running_job_is_cancelled_and_the_next_one_starts(
    gateway: Gateway, worker: object
) -> None:
    fx = make_tenant("stopped")
    client = fx.client(gateway)
    lines = [{"messages": [*prompt(s), fixed(s)], "tools": TOOLS} for s in (1, 2, 3)]
    training = upload(client, lines)
    long = client.fine_tuning.jobs.create(
        model="stopped",
        training_file=training,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50}}},
    )
    queued = client.fine_tuning.jobs.create(
        model="stopped",
        training_file=training,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    )
    deadline = time.monotonic() + 300
    while not any(
        e.type == "metrics" for e in client.fine_tuning.jobs.list_events(long.id, limit=5)
    ):
        assert time.monotonic() < deadline, "the job never stepped"
        time.sleep(1)
    assert client.fine_tuning.jobs.retrieve(long.id).status == "running"
    assert client.fine_tuning.jobs.cancel(long.id).status == "cancelled"
    cancelled, events = follow(client, long.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    # The waiting job starts once the cancelled one's cycle has ended, and runs to its end
    # (one step: too little to pass the gate with nothing to evaluate on).
    after, _ = follow(client, queued.id)
    assert after.status == "failed" and after.error.code == "needs_evaluation"  # type: ignore[union-attr]
    with unit_of_work() as session:
        agent = session.get(Agent, fx.agent.id)
        assert agent is not None and agent.live_version_id is None
    steps = [e.data["step"] for e in events if e.type == "metrics" and "step" in (e.data or {})]
    assert steps and max(steps) < 150  # it stopped long before its 50 epochs of 3 batches


def test_a_reinforcement_job_grades_rollouts_with_the_environment(
    gateway: Gateway, worker: object
) -> None:
    fx = make_tenant("rewarded", rank=16, alpha=32)
    client = fx.client(gateway)
    tasks = ENV.tasks("train", 8, seed=5)
    lines = [
        {"messages": [{"role": "user", "content": t.prompt}], "answer": t.answer} for t in tasks
    ]
    job = client.fine_tuning.jobs.create(
        model="rewarded",
        training_file=upload(client, lines),
        validation_file=upload(client, lines[:6]),
        method={
            "type": "reinforcement",
            "reinforcement": {
                "grader": {"type": "environment", "name": "calculator"},
                "hyperparameters": {"n_epochs": 2, "batch_size": 16},
            },
        },
    )
    job, events = follow(client, job.id)
    messages = [e.message for e in events]
    sampled = next(e for e in events if e.message.startswith("Sampled 4 rollouts of each of 8"))
    assert 0.0 <= sampled.data["rollout_reward"] <= 1.0
    if sampled.data["rows"] == 0:  # every group scored alike: nothing to learn, said so
        assert job.status == "failed" and "scored the same" in job.error.message  # type: ignore[union-attr]
        assert job.error.code == "training_failed"  # type: ignore[union-attr]
        return
    steps = [e for e in events if e.type == "metrics" and "step" in (e.data or {})]
    assert steps and all("pg" in e.data["losses"] for e in steps)
    # One round of rollouts on a tiny model may or may not raise the greedy reward: either
    # way the gate measured the grader's score before and after, and said what it decided.
    (checkpoint,) = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert "validation_before" in checkpoint.metrics.model_dump()  # type: ignore[union-attr]
    assert "corrections_before" in checkpoint.metrics.model_dump()  # type: ignore[union-attr]
    if job.status == "succeeded":
        assert job.fine_tuned_model == "rewarded@v1"
    else:
        assert job.error.code == "evaluation_failed", (job.error, messages[-3:])  # type: ignore[union-attr]
