"""Soak, as in production: chat from six tenants while real learning cycles run and new
versions go live.

A private stack (`tests/helpers/stack.py`: its own database, Redis, gateway, Celery worker with
beat and trainer service, on the session's engine) serves eight clients over six tenants
(every other request streamed) for `CLORA_SOAK_S` seconds (60 in the suite, 600 with
`make soak`). Meanwhile a cycler corrects one tenant's latest answer and runs a real short
learning cycle for it (compile, train on the trainer service, publish, evaluate, gate), one
tenant after another, and every 3 s a new version of one tenant's adapter is promoted, as a
passing cycle does. Every request must succeed and be logged once (counted by its text), every
cycle must end, and the resident memory of every process is sampled each second: gateway,
worker (with beat), trainer, engine, Redis and Postgres. The gateway and the engine must stay
flat: the mean over the last third of the run may exceed the mean over the middle third by at
most 5% + 16 MiB in a run of 5 minutes or more (`make soak`; the first third is warm-up). The
suite's 60 s form allows 5% + 64 MiB, so it catches a gross leak only. The gateway runs with
two malloc arenas, as `clora up` runs it (`GATEWAY_ENV`): with one per thread it grew 43 to 88
MiB between thirds while a cycle ran (docs/RELIABILITY.md), with two 0.4 MiB. The others are reported (docs/RELIABILITY.md):
the trainer and the worker grow while cycles train, and on two cores a run this short cannot
tell that from a leak.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from sqlalchemy import select

from app.adapters.service import adapter_name, load_into_engines, promote, publish
from app.adapters.storage import copy_from
from app.agents.schemas import AgentIn
from app.agents.service import create_agent
from app.cycles.schemas import ScheduleUpdate
from app.cycles.service import update_schedule
from app.models import Tenant, TrainingExample
from app.sampler.launcher import EngineProcess
from app.tenants.service import create_api_key, create_tenant
from tests.helpers.adapters import random_adapter
from tests.helpers.faults import logged
from tests.helpers.figures import record
from tests.helpers.stack import Stack, postgres_rss_mib, private_stack, rss_mib

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SOAK_S = float(os.environ.get("CLORA_SOAK_S", "60"))
FLAT = ("gateway", "engine")
#: MiB a flat process may grow between the middle and last thirds, besides 5% (see above).
ALLOWED_MIB = 16 if SOAK_S >= 300 else 64
"""Processes whose memory must stay flat; every process is sampled and reported."""


def publish_live(stack: Stack, tenant_id: uuid.UUID, agent_id: uuid.UUID, source: Path) -> None:
    """Publish a folder as the agent's next version and make it live, as a passing cycle does
    (into the stack's own registry and engine, whatever the session's settings are)."""
    settings = stack.settings()
    with stack.sessions.begin() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        version = publish(session, settings, tenant, agent_id, copy_from(source))
        promote(session, tenant.id, version.id)
        name, path = adapter_name(tenant.slug, "bot", version.number), version.path
    load_into_engines(settings, name, path)


def test_soak_chat_from_six_tenants_while_cycles_run_and_versions_go_live(
    engine: EngineProcess, tmp_path: Path
) -> None:
    adapters = [random_adapter(tmp_path / f"adapter-{seed}", seed) for seed in range(4)]
    with private_stack(engine.url, tmp_path / "stack", CLORA_TRAINER_ID="soak") as stack:
        tenants = []
        with stack.sessions.begin() as session:
            for _ in range(6):
                tenant = create_tenant(session, f"soak-{uuid.uuid4().hex[:8]}")
                agent = create_agent(
                    session, tenant.id, AgentIn(name="bot", lora_rank=8, lora_alpha=8)
                )
                _, key = create_api_key(session, tenant.id, "soak")
                update_schedule(
                    session, tenant.id, agent.id, ScheduleUpdate(steps=6, learning_rate=1e-3)
                )
                tenants.append((tenant.id, agent.id, key))
        figures = soak(stack, engine, tenants, adapters)
    record("soak", figures)  # before the assertions: a failed run still writes what it saw
    for name in FLAT:
        middle, last = figures["rss_mean_middle_last_third_mib"][name]
        assert last <= middle * 1.05 + ALLOWED_MIB, f"{name} memory grew {middle} -> {last} MiB"
    assert figures["errors"] == 0, figures["failures"]
    assert figures["lost"] == 0 and figures["duplicated"] == 0  # every answer logged once
    assert figures["versions_published"] > 0  # versions went live (how many depends on the CPU)
    outcomes = figures["cycle_outcomes"]
    assert outcomes and set(outcomes) <= {"succeeded", "rejected", "needs_evaluation"}


def soak(
    stack: Stack,
    engine: EngineProcess,
    tenants: list[tuple[uuid.UUID, uuid.UUID, str]],
    adapters: list[Path],
) -> dict[str, Any]:
    ok: dict[int, list[str]] = {i: [] for i in range(len(tenants))}
    failures: list[str] = []
    samples: dict[str, list[float]] = {
        name: [] for name in ("gateway", "worker", "trainer", "engine", "redis", "postgres")
    }
    published, cycles = 0, []
    threads: list[int] = []  # the gateway's, beside its memory

    async def client_loop(n: int, stop: asyncio.Event) -> None:
        t = n % len(tenants)
        client = openai.AsyncOpenAI(
            base_url=stack.api, api_key=tenants[t][2], max_retries=0, timeout=120
        )
        i = 0
        while not stop.is_set():
            i += 1
            messages = [{"role": "user", "content": f"soak {n} {i}"}]
            try:
                if i % 2:
                    resp = await client.chat.completions.create(
                        model="bot",
                        messages=messages,
                        max_tokens=8,  # type: ignore[arg-type]
                    )
                    ok[t].append(resp.id)
                else:
                    stream = await client.chat.completions.create(
                        model="bot",
                        messages=messages,
                        max_tokens=8,
                        stream=True,  # type: ignore[arg-type]
                    )
                    last = ""
                    async for chunk in stream:
                        last = chunk.id
                    ok[t].append(last)
            except openai.OpenAIError as exc:
                failures.append(repr(exc)[:300])

    def one_cycle(t: int) -> str:
        """Correct tenant t's latest answer, wait for it to compile, run a cycle to its end."""
        tenant_id, agent_id, key = tenants[t]
        deadline = time.monotonic() + 120
        while not ok[t]:
            assert time.monotonic() < deadline, f"tenant {t} was never answered"
            time.sleep(0.5)
        latest = ok[t][-1]
        resp = httpx.post(
            f"{stack.api}/feedback",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "interaction_id": latest,
                "kind": "correction",
                "correction": {"content": f"the corrected answer {len(cycles)}"},
            },
            timeout=60,
        )
        assert resp.status_code == 201, resp.text
        examples = select(TrainingExample).where(TrainingExample.agent_id == agent_id)
        deadline = time.monotonic() + 120
        while not stack.all(examples):
            assert time.monotonic() < deadline, "the correction was never compiled"
            time.sleep(0.5)
        run_id = stack.start_cycle(tenant_id, agent_id)
        deadline = time.monotonic() + 600
        while (run := stack.run(run_id)).status in ("queued", "running"):
            assert time.monotonic() < deadline, f"cycle {run_id} is stuck"
            time.sleep(1)
        return str(run.status)

    async def cycler(stop: asyncio.Event) -> None:
        await asyncio.sleep(3)  # every tenant has answers to correct
        while not stop.is_set():
            cycles.append(await asyncio.to_thread(one_cycle, len(cycles) % len(tenants)))

    async def publisher(stop: asyncio.Event) -> None:
        nonlocal published
        while not stop.is_set():
            await asyncio.sleep(3)
            tenant_id, agent_id, _ = tenants[published % len(tenants)]
            source = adapters[published % len(adapters)]
            await asyncio.to_thread(publish_live, stack, tenant_id, agent_id, source)
            published += 1

    async def sampler(stop: asyncio.Event) -> None:
        pids = {name: proc.pid for name, proc in stack.procs.items()}
        assert engine.pid is not None and stack.redis.process is not None
        pids.update(engine=engine.pid, redis=stack.redis.process.pid)
        gateway = psutil.Process(pids["gateway"])
        # As clora up runs it (unless the caller's environment sets its own).
        assert gateway.environ().get("MALLOC_ARENA_MAX") == os.environ.get("MALLOC_ARENA_MAX", "2")
        while not stop.is_set():
            for name, pid in pids.items():
                samples[name].append(rss_mib(pid))
            threads.append(gateway.num_threads())
            samples["postgres"].append(postgres_rss_mib())
            await asyncio.sleep(1)

    async def run() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(client_loop(n, stop)) for n in range(8)]
        tasks += [asyncio.create_task(f(stop)) for f in (publisher, sampler)]
        cycling = asyncio.create_task(cycler(stop))
        await asyncio.sleep(SOAK_S)
        stop.set()
        await asyncio.gather(*tasks)
        await cycling  # the cycle under way ends (or the cycler fails: stuck)

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    landed = [
        logged(tenant_id, ok[t], sessions=stack.sessions)
        for t, (tenant_id, _, _) in enumerate(tenants)
    ]
    served = sum(len(v) for v in ok.values())
    growth: dict[str, float] = {}
    thirds: dict[str, tuple[float, float]] = {}
    for name, series in samples.items():
        third = len(series) // 3
        middle, last = (
            statistics.mean(series[third : 2 * third]),
            statistics.mean(series[2 * third :]),
        )
        growth[name] = round(last - middle, 1)
        thirds[name] = (middle, last)
    return {
        "seconds": round(elapsed, 1),
        "tenants": len(tenants),
        "clients": 8,
        "requests_ok": served,
        "errors": len(failures),
        "lost": sum(x.lost for x in landed),
        "duplicated": sum(x.duplicated for x in landed),
        "versions_published": published,
        "cycles_run": len(cycles),
        "cycle_outcomes": dict(sorted((s, cycles.count(s)) for s in set(cycles))),
        "requests_per_s": round(served / elapsed, 1),
        "rss_mib_min_max": {k: [round(min(v)), round(max(v))] for k, v in samples.items()},
        "rss_growth_last_vs_middle_third_mib": growth,
        "gateway_threads_min_max": [min(threads), max(threads)],
        "rss_mean_middle_last_third_mib": {k: [round(m), round(x)] for k, (m, x) in thirds.items()},
        "failures": failures[:5],
    }
