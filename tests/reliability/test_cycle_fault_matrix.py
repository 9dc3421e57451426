"""The fault matrix during a learning cycle: kill -9 the gateway, the Celery worker (with beat)
or the trainer service while a cycle trains and feedback keeps arriving.

The stack is a private one (its own database, Redis, gateway process, worker with beat and
trainer service; the session's engine), so that killing a process disturbs no other test and
no other process of the session takes its work. After each fault, counted by content against
what the clients were told was accepted: every accepted correction is one feedback row and one
training example, every accepted chat one interaction; the cycle ends (no agent stuck); every
version passes its checksum. Recovery times are measured (docs/RELIABILITY.md).
(The engine killed during a cycle's evaluation is tests/reliability/test_cycle_engine_restart.py.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from app.adapters import service as registry
from app.agents.service import create_agent
from app.cycles.schemas import ScheduleUpdate
from app.cycles.service import update_schedule
from app.models import AdapterVersion, CycleRun, Feedback, Interaction, TrainingExample, TrainingJob
from app.models.enums import ExampleKind
from app.sampler.launcher import EngineProcess
from app.tenants.service import create_api_key, create_tenant
from tests.helpers.figures import record
from tests.helpers.stack import Stack, descendants, private_stack
from tests.helpers.worker import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def stack(engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with private_stack(
        engine.url,
        tmp_path_factory.mktemp("fault-matrix"),
        CLORA_CYCLE_STALE_AFTER_S="10",  # beat's reaper hands a silent cycle over after 10 s
        CLORA_TRAINER_STALE_AFTER_S="6",  # a silent trainer's job is claimed again after 6 s
        CLORA_TRAINER_STEP_DELAY_S="0.4",  # each step takes long enough to be killed inside
        CLORA_TRAINER_ID="fault-matrix",
    ) as stack:
        yield stack


@dataclass
class Posts:
    """What the feedback clients were told: accepted corrections and chats, failures."""

    corrections: list[str] = field(default_factory=list)
    chats: list[str] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)
    failures: int = 0

    def first_after(self, moment: float) -> float | None:
        later = [t for t in self.accepted_at if t >= moment]
        return min(later) - moment if later else None


def post_until(stack: Stack, key: str, tag: str, posts: Posts, stop_event: threading.Event) -> None:
    """Chat, then correct the answer to a text unique to this post; until told to stop."""
    client = openai.OpenAI(base_url=stack.api, api_key=key, max_retries=0, timeout=20)
    i = 0
    while not stop_event.is_set():
        i += 1
        try:
            reply = client.chat.completions.create(
                model="side", messages=[{"role": "user", "content": f"{tag} q{i}"}], max_tokens=3
            )
            posts.chats.append(f"{tag} q{i}")
            text = f"{tag} fix {i}"
            resp = httpx.post(
                f"{stack.api}/feedback",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "interaction_id": reply.id,
                    "kind": "correction",
                    "correction": {"content": text},
                },
                timeout=20,
            )
            if resp.status_code in (200, 201):
                posts.corrections.append(text)
                posts.accepted_at.append(time.monotonic())
            else:
                assert resp.status_code < 500 or resp.status_code == 503, resp.text
                posts.failures += 1
        except (openai.APIConnectionError, openai.APITimeoutError, httpx.HTTPError):
            posts.failures += 1
            time.sleep(0.3)
        except openai.APIStatusError as exc:
            assert exc.status_code < 500 or exc.status_code == 503, exc
            posts.failures += 1
            time.sleep(0.3)


@pytest.mark.parametrize("target", ["gateway", "worker", "trainer"])
def test_kill_9_during_a_cycle_while_feedback_arrives(stack: Stack, target: str) -> None:
    tag = f"{target}-{uuid.uuid4().hex[:6]}"
    with stack.sessions.begin() as session:
        tenant = create_tenant(session, f"m-{tag}")
        agent = create_agent(session, tenant.id, "bot", lora_rank=8, lora_alpha=8)
        # Feedback during the fault goes to a second agent: the cycle under test stays small
        # (a resumed cycle plans again, and would take in every correction compiled by then).
        side = create_agent(session, tenant.id, "side", lora_rank=8, lora_alpha=8)
        _, key = create_api_key(session, tenant.id, "matrix")
        update_schedule(session, tenant.id, agent.id, ScheduleUpdate(steps=40, learning_rate=3e-4))
        tenant_id, agent_id, side_id = tenant.id, agent.id, side.id
    client = openai.OpenAI(base_url=stack.api, api_key=key, max_retries=0)
    first = client.chat.completions.create(
        model="bot", messages=[{"role": "user", "content": f"{tag} seed"}], max_tokens=3
    )
    resp = httpx.post(
        f"{stack.api}/feedback",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "interaction_id": first.id,
            "kind": "correction",
            "correction": {"content": "a long corrected answer the model has never seen " * 3},
        },
    )
    assert resp.status_code == 201, resp.text
    sft = select(TrainingExample).where(
        TrainingExample.agent_id == agent_id, TrainingExample.kind == ExampleKind.sft
    )
    wait_for(lambda: len(stack.all(sft)) >= 1, timeout_s=120)

    run_id = stack.start_cycle(tenant_id, agent_id)
    job_of = select(TrainingJob).where(TrainingJob.agent_id == agent_id)
    wait_for(
        lambda: any(j.steps_done >= 2 for j in stack.all(job_of)), timeout_s=240, interval_s=0.2
    )

    posts, stop_posting = Posts(), threading.Event()
    poster = threading.Thread(target=post_until, args=(stack, key, tag, posts, stop_posting))
    poster.start()
    try:
        time.sleep(2)
        proc = stack.procs[target]
        children = descendants(proc.pid)
        proc.kill()
        proc.wait(30)
        killed = time.monotonic()
        # Nothing the killed process started outlives it (the worker's embedded beat).
        wait_for(lambda: not any(Path(f"/proc/{c}").exists() for c in children), timeout_s=10)
        time.sleep(2)
        restarted = time.monotonic()
        stack.start(target)
        recovery = measure_recovery(stack, target, posts, run_id, job_of, restarted)
        time.sleep(3)
    finally:
        stop_posting.set()
        poster.join(60)

    run = wait_for(
        lambda: (
            (r := stack.one(select(CycleRun).where(CycleRun.id == run_id)))
            and r.status not in ("queued", "running")
            and r
        ),
        timeout_s=600,
        interval_s=1,
    )
    assert run.status in ("succeeded", "rejected", "needs_evaluation"), (run.status, run.error)

    # Counted by content: every correction the clients were told was accepted is one feedback
    # row and (once compiled) one training example; every accepted chat one interaction.
    assert posts.corrections, "no feedback was accepted around the fault"
    fixes = {f"{tag} fix {i}" for i in range(1, 10_000)}

    side_sft = select(TrainingExample).where(
        TrainingExample.agent_id == side_id, TrainingExample.kind == ExampleKind.sft
    )

    def example_texts() -> Counter[str]:
        rows = stack.all(side_sft)
        return Counter(
            str(r.payload["messages"][-1].get("content"))
            for r in rows
            if r.payload["messages"][-1].get("content") in fixes
        )

    wait_for(lambda: set(posts.corrections) <= set(example_texts()), timeout_s=180, interval_s=1)
    feedback = Counter(
        str((f.payload or {}).get("correction", {}).get("content"))
        for f in stack.all(select(Feedback).where(Feedback.tenant_id == tenant_id))
    )
    examples = example_texts()
    lost = [t for t in posts.corrections if feedback[t] != 1 or examples[t] != 1]
    assert lost == [], (lost, feedback, examples)
    assert all(n == 1 for t, n in examples.items()), examples  # no example twice, told or not
    asked = Counter(
        str(i.request["messages"][-1]["content"])
        for i in stack.all(select(Interaction).where(Interaction.tenant_id == tenant_id))
    )
    assert [c for c in posts.chats if asked[c] != 1] == []
    versions = stack.all(select(AdapterVersion).where(AdapterVersion.agent_id == agent_id))
    failing = sum(not registry.verify(v) for v in versions)
    assert failing == 0
    record(
        f"fault_{target}_kill9_during_cycle",
        {
            "fault": f"kill -9 of the {target} while a learning cycle trains and feedback arrives",
            "cycle_final_status": str(run.status),
            "cycle_resumed": int((run.metrics or {}).get("resumed", 0)),
            "corrections_accepted": len(posts.corrections),
            "corrections_lost_or_duplicated": len(lost),
            "chats_accepted": len(posts.chats),
            "client_failures_during_fault": posts.failures,
            "versions_published": len(versions),
            "versions_failing_checksum": failing,
            "down_s": round(restarted - killed, 2),
            "recovery_s": round(recovery, 2),
        },
    )


def measure_recovery(
    stack: Stack, target: str, posts: Posts, run_id: uuid.UUID, job_of, restarted: float
) -> float:  # type: ignore[no-untyped-def]
    """Seconds from the restart until the killed process's work moved again: an accepted post
    (gateway), the cycle taken over by the new worker, the training job stepping again."""
    if target == "gateway":
        return wait_for(lambda: posts.first_after(restarted), timeout_s=120, interval_s=0.2)

    if target == "worker":

        def resumed() -> float | None:
            run = stack.one(select(CycleRun).where(CycleRun.id == run_id))
            taken = run.status != "running" or (run.metrics or {}).get("resumed", 0) >= 1
            return time.monotonic() - restarted if taken else None

        return wait_for(resumed, timeout_s=240, interval_s=0.2)
    before = {j.id: j.steps_done for j in stack.all(job_of)}

    def stepped() -> float | None:
        jobs = stack.all(job_of)
        moved = any(j.steps_done > before.get(j.id, 0) or j.status == "succeeded" for j in jobs)
        return time.monotonic() - restarted if moved else None

    return wait_for(stepped, timeout_s=240, interval_s=0.2)
