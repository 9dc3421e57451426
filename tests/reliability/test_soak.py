"""Soak: chat traffic from many tenants for a fixed time while new adapter versions go live.

A gateway process of its own serves eight clients over six tenants (every other request
streamed) for `CLORA_SOAK_S` seconds (default 60); every 3 s a new version of one tenant's
adapter is published and promoted through the registry, exactly as a learning cycle does, and
the next requests of that tenant run on it. Every request must succeed and be logged once,
and the resident memory of the gateway and of the vLLM engine must stay flat: the mean over
the last third of the run may exceed the mean over the middle third by at most 5% + 16 MiB
(the first third is warm-up: allocator pools, adapter slots, caches).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import openai
import pytest

from app.sampler.launcher import EngineProcess
from tests.helpers.adapters import random_adapter
from tests.helpers.faults import assert_logged_once, make_rig
from tests.helpers.figures import record
from tests.helpers.gateway import Gateway, make_tenant, publish_live, start_gateway_process

pytestmark = pytest.mark.slow

SOAK_S = float(os.environ.get("CLORA_SOAK_S", "60"))


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (from /proc)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                pids.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


def test_soak_many_tenants_while_versions_go_live(
    database_url: str, engine: EngineProcess, gateway: Gateway, tmp_path: Path
) -> None:
    tenants = [make_tenant("bot") for _ in range(6)]
    adapters = [random_adapter(tmp_path / f"adapter-{seed}", seed) for seed in range(4)]
    rig = make_rig(database_url, engine.url, tmp_path)
    server, port = rig.redis, rig.port
    proc = start_gateway_process(rig.env, port, tmp_path / "gateway.log")
    ok: dict[int, list[str]] = {i: [] for i in range(len(tenants))}
    failures: list[str] = []
    samples: dict[str, list[float]] = {"gateway": [], "engine": []}
    published = 0

    async def client_loop(n: int, stop: asyncio.Event) -> None:
        t = n % len(tenants)
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=tenants[t].key,
            max_retries=0,
            timeout=60,
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

    async def publisher(stop: asyncio.Event) -> None:
        nonlocal published
        while not stop.is_set():
            await asyncio.sleep(3)
            fx = tenants[published % len(tenants)]
            await asyncio.to_thread(publish_live, fx, adapters[published % len(adapters)])
            published += 1

    async def sampler(stop: asyncio.Event) -> None:
        while not stop.is_set():
            samples["gateway"].append(rss_mib(proc.pid))
            assert engine.pid is not None
            samples["engine"].append(rss_mib(engine.pid))
            await asyncio.sleep(1)

    async def run() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(client_loop(n, stop)) for n in range(8)]
        tasks += [asyncio.create_task(publisher(stop)), asyncio.create_task(sampler(stop))]
        await asyncio.sleep(SOAK_S)
        stop.set()
        await asyncio.gather(*tasks)

    started = time.monotonic()
    try:
        asyncio.run(run())
        elapsed = time.monotonic() - started
        for t, fx in enumerate(tenants):
            assert_logged_once(fx.tenant.id, ok[t])
    finally:
        proc.terminate()
        proc.wait(20)
        server.stop()
    served = sum(len(v) for v in ok.values())
    growth: dict[str, float] = {}
    for name, series in samples.items():
        third = len(series) // 3
        middle, last = (
            statistics.mean(series[third : 2 * third]),
            statistics.mean(series[2 * third :]),
        )
        growth[name] = last - middle
        assert last <= middle * 1.05 + 16, f"{name} memory grew {middle:.0f} -> {last:.0f} MiB"
    assert failures == [], failures[:5]
    assert published >= SOAK_S // 3 - 2
    record(
        "soak",
        {
            "seconds": round(elapsed, 1),
            "tenants": len(tenants),
            "clients": 8,
            "requests_ok": served,
            "errors": len(failures),
            "versions_published": published,
            "requests_per_s": round(served / elapsed, 1),
            "gateway_rss_mib": [round(min(samples["gateway"])), round(max(samples["gateway"]))],
            "engine_rss_mib": [round(min(samples["engine"])), round(max(samples["engine"]))],
            "rss_growth_last_vs_middle_third_mib": {k: round(v, 1) for k, v in growth.items()},
        },
    )
