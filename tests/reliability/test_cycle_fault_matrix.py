"""The fault matrix during a learning cycle: kill -9 the gateway, the Celery worker (with beat),
the trainer service or the engine while a cycle trains and feedback keeps arriving.

The stack is a private one (its own database, Redis, gateway process, worker with beat and
trainer service; the session's engine, or an engine of its own for the engine's row), so that
killing a process disturbs no other test and no other process of the session takes its work.
After each fault, counted by content against what the clients were told was accepted: every
accepted correction is one feedback row and one training example, every accepted chat one
interaction; the cycle ends (no agent stuck); every version passes its checksum. Recovery times
are measured (docs/RELIABILITY.md). (How the cycle's evaluation waits for a restarted engine and
measures again is unit-tested in tests/reliability/test_cycle_engine_restart.py.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from app.adapters import service as registry
from app.agents.schemas import AgentIn
from app.agents.service import create_agent
from app.cycles.schemas import ScheduleUpdate
from app.cycles.service import update_schedule
from app.models import AdapterVersion, CycleRun, Feedback, Interaction, TrainingExample, TrainingJob
from app.models.enums import ExampleKind
from app.sampler.launcher import EngineProcess, LoraSlots, free_port
from app.tenants.service import create_api_key, create_tenant
from tests.helpers.engine import MODEL_DIR, READY_TIMEOUT_S, SERVED_MODEL_NAME
from tests.helpers.figures import record
from tests.helpers.stack import Stack, descendants, private_stack
from tests.helpers.worker import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


SETTINGS = {
    "CLORA_CYCLE_STALE_AFTER_S": "10",  # beat's reaper hands a silent cycle over after 10 s
    "CLORA_TRAINER_STALE_AFTER_S": "6",  # a silent trainer's job is claimed again after 6 s
    "CLORA_TRAINER_STEP_DELAY_S": "0.4",  # each step takes long enough to be killed inside
}


@pytest.fixture(scope="module")
def stack(engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("fault-matrix")
    with private_stack(engine.url, folder, CLORA_TRAINER_ID="fault-matrix", **SETTINGS) as stack:
        yield stack


@dataclass
class OwnEngine:
    """An engine of the test's own on a fixed port, so that it can be killed and restarted."""

    folder: Path
    port: int = field(default_factory=free_port)
    procs: list[EngineProcess] = field(default_factory=list)

    @property
    def current(self) -> EngineProcess:
        return self.procs[-1]

    def start(self) -> EngineProcess:
        proc = EngineProcess(
            model_dir=MODEL_DIR,
            loras=LoraSlots(max_loras=2, max_lora_rank=16),
            port=self.port,
            served_model_name=SERVED_MODEL_NAME,
            log_path=self.folder / f"engine-{len(self.procs)}.log",
        )
        proc.start()
        self.procs.append(proc)
        return proc


@pytest.fixture
def engine_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, OwnEngine]]:
    folder = tmp_path_factory.mktemp("fault-matrix-engine")
    own = OwnEngine(folder)
    own.start().wait_ready(READY_TIMEOUT_S)
    try:
        with private_stack(
            own.current.url, folder, CLORA_TRAINER_ID="fault-engine", **SETTINGS
        ) as stack:
            yield stack, own
    finally:
        for proc in own.procs:
            proc.stop()


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


def chat(client: openai.OpenAI, text: str, posts: Posts) -> str:
    """One chat with the side agent; its interaction id (the chat is counted as accepted)."""
    reply = client.chat.completions.create(
        model="side", messages=[{"role": "user", "content": text}], max_tokens=3
    )
    posts.chats.append(text)
    return reply.id


def post_until(
    stack: Stack,
    key: str,
    tag: str,
    posts: Posts,
    stop_event: threading.Event,
    spare: list[str] | None = None,
) -> None:
    """Chat, then correct the answer to a text unique to this post; until told to stop. When
    the chat fails (the engine is down), correct one of the ``spare`` interactions instead, so
    that feedback keeps arriving while the fault lasts."""
    client = openai.OpenAI(base_url=stack.api, api_key=key, max_retries=0, timeout=20)
    spare = list(spare or [])
    i = 0
    while not stop_event.is_set():
        i += 1
        try:
            try:
                interaction = chat(client, f"{tag} q{i}", posts)
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                if not spare:
                    raise
                if isinstance(exc, openai.APIStatusError):
                    assert exc.status_code < 500 or exc.status_code == 503, exc
                posts.failures += 1
                interaction = spare.pop()
                time.sleep(1)
            text = f"{tag} fix {i}"
            resp = httpx.post(
                f"{stack.api}/feedback",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "interaction_id": interaction,
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
    def kill() -> list[int]:
        proc = stack.procs[target]
        children = descendants(proc.pid)
        proc.kill()
        proc.wait(30)
        return children

    fault_during_cycle(stack, target, kill, lambda: stack.start(target))


def test_engine_kill_9_during_a_cycle_while_feedback_arrives(
    engine_stack: tuple[Stack, OwnEngine],
) -> None:
    """The engine dies while the cycle trains: chats get 503s, corrections of earlier chats
    are still accepted, the cycle's evaluation waits for the engine, which comes back on its
    port; the gateway serves again without being restarted."""
    stack, own = engine_stack

    def kill() -> list[int]:
        pid = own.current.pid
        assert pid is not None
        children = descendants(pid)
        os.killpg(pid, signal.SIGKILL)
        own.current.stop()
        return children

    def down_until_evaluation(run_id: uuid.UUID) -> None:
        """The engine stays down until the cycle has trained, published its candidate and
        found no engine to evaluate it on: it must wait (heartbeating), not fail."""
        wait_for(
            lambda: (stack.run(run_id).metrics or {}).get("evaluation_retries", 0) >= 1,
            timeout_s=240,
            interval_s=0.5,
        )

    fault_during_cycle(stack, "engine", kill, own.start, spare_chats=60, hold=down_until_evaluation)


def fault_during_cycle(
    stack: Stack,
    target: str,
    kill: Callable[[], list[int]],
    restart: Callable[[], object],
    spare_chats: int = 0,
    hold: Callable[[uuid.UUID], None] = lambda _run_id: time.sleep(2),
) -> None:
    """Kill ``target`` while a cycle trains and feedback arrives, keep it down (``hold``),
    restart it, count by content."""
    tag = f"{target}-{uuid.uuid4().hex[:6]}"
    with stack.sessions.begin() as session:
        tenant = create_tenant(session, f"m-{tag}")
        agent = create_agent(session, tenant.id, AgentIn(name="bot", lora_rank=8, lora_alpha=8))
        # Feedback during the fault goes to a second agent: the cycle under test stays small
        # (a resumed cycle plans again, and would take in every correction compiled by then).
        side = create_agent(session, tenant.id, AgentIn(name="side", lora_rank=8, lora_alpha=8))
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
    side_client = openai.OpenAI(base_url=stack.api, api_key=key, max_retries=0, timeout=20)
    spare = [chat(side_client, f"{tag} spare {i}", posts) for i in range(spare_chats)]
    poster = threading.Thread(target=post_until, args=(stack, key, tag, posts, stop_posting, spare))
    poster.start()
    try:
        time.sleep(2)
        children = kill()
        killed = time.monotonic()
        # Nothing the killed process started outlives it (the worker's embedded beat).
        wait_for(lambda: not any(Path(f"/proc/{c}").exists() for c in children), timeout_s=10)
        hold(run_id)
        restarted = time.monotonic()
        restart()
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

    # Feedback kept arriving while the fault lasted (from the kill until the killed process's
    # work moved again), except where the fault is the gateway itself.
    during = sum(killed <= t <= restarted + recovery for t in posts.accepted_at)
    if target != "gateway":
        assert during > 0, (target, posts.accepted_at, killed, restarted, recovery)

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

    def asked() -> Counter[str]:
        return Counter(
            str(i.request["messages"][-1]["content"])
            for i in stack.all(select(Interaction).where(Interaction.tenant_id == tenant_id))
        )

    # A chat answered just before a kill lands once its record is drained from Redis (the new
    # gateway claims the dead one's pending entries): wait for that, then count exactly.
    wait_for(lambda: all(asked()[c] >= 1 for c in posts.chats), timeout_s=120, interval_s=1)
    counted = asked()
    assert [c for c in posts.chats if counted[c] != 1] == []
    versions = stack.all(select(AdapterVersion).where(AdapterVersion.agent_id == agent_id))
    failing = sum(not registry.verify(v) for v in versions)
    assert failing == 0
    record(
        f"fault_{target}_kill9_during_cycle",
        {
            "fault": f"kill -9 of the {target} while a learning cycle trains and feedback arrives",
            "cycle_final_status": str(run.status),
            "cycle_resumed": int((run.metrics or {}).get("resumed", 0)),
            "cycle_evaluation_retries": int((run.metrics or {}).get("evaluation_retries", 0)),
            "corrections_accepted": len(posts.corrections),
            "corrections_accepted_during_fault": during,
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
    if target == "engine":  # a chat answered again (the engine's cold start included)
        served = len(posts.chats)
        return wait_for(
            lambda: len(posts.chats) > served and time.monotonic() - restarted,
            timeout_s=READY_TIMEOUT_S,
            interval_s=0.2,
        )

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
