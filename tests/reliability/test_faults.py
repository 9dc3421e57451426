"""Fault injection under load: kill -9 the gateway, kill -9 the engine, stop or kill -9 Redis.

Each test runs its own gateway process (and, where it is the fault, its own Redis or vLLM
engine) against the session database, sends chat traffic from four clients (streamed and
not), injects the fault, recovers, and then checks that every request the clients saw
succeed has exactly one interaction row. Requests cut off while a process was dead fail on
the client side (a connection error or a 503 envelope), never with a 500 and never silently.
Recovery time is the time from the restart to the first success; the figures go to
docs/RELIABILITY.md through tests/helpers/figures.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import redis as redis_lib

from app.sampler.launcher import EngineProcess, LoraSlots
from tests.helpers.engine import MODEL_DIR, READY_TIMEOUT_S, SERVED_MODEL_NAME
from tests.helpers.faults import Traffic, answered, drive, logged, make_rig
from tests.helpers.figures import record
from tests.helpers.gateway import free_port, start_gateway_process

pytestmark = pytest.mark.slow


def test_gateway_kill_9_under_load_loses_nothing(
    database_url: str, engine: EngineProcess, tmp_path: Path
) -> None:
    rig = make_rig(database_url, engine.url, tmp_path)
    fx, server, port, env = rig.fx, rig.redis, rig.port, rig.env
    log = tmp_path / "gateway.log"
    procs = [start_gateway_process(env, port, log)]
    traffic = Traffic()
    marks: dict[str, float] = {}

    async def fault() -> None:
        procs[0].send_signal(signal.SIGKILL)
        await asyncio.to_thread(procs[0].wait)
        marks["killed"] = time.monotonic()
        await asyncio.sleep(1)
        marks["restart"] = time.monotonic()
        procs.append(await asyncio.to_thread(start_gateway_process, env, port, log))

    try:
        asyncio.run(drive(port, fx.key, "bot", traffic, fault))
        stored = logged(fx.tenant.id, traffic.ok, since=marks["restart"])
    finally:
        procs[-1].terminate()
        procs[-1].wait(20)
        server.stop()
    recovery = traffic.first_ok_after(marks["restart"])
    record(  # before any assertion: a failed run still writes what it saw
        "fault_gateway_kill9",
        {
            "fault": "kill -9 of the gateway under load (4 clients, half streamed)",
            "served_ok": len(traffic.ok),
            "failed_while_down": len(traffic.failures),
            "accepted_lost": stored.lost,
            "duplicated": stored.duplicated,
            "recovery_s": None if recovery is None else round(recovery, 2),
        },
    )
    stored.assert_once()
    assert recovery is not None and recovery < 60
    assert len(traffic.ok) >= 6  # answers before the fault and after it (`drive`)
    assert all(t >= marks["killed"] - 5 for t, _ in traffic.failures), "failures outside the fault"


@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_redis_outage_under_load_fails_nothing_and_loses_nothing(
    database_url: str, engine: EngineProcess, tmp_path: Path, how: str
) -> None:
    """Redis stopped, or killed with -9, for 4 s under load. With the default
    ``appendfsync everysec`` Redis writes each command to its log before it replies, so a
    record acknowledged before the kill is still there when it comes back."""
    rig = make_rig(database_url, engine.url, tmp_path)
    fx, server, port, redis_url = rig.fx, rig.redis, rig.port, rig.redis_url
    proc = start_gateway_process(rig.env, port, tmp_path / "gateway.log")
    traffic = Traffic()
    marks: dict[str, float] = {}

    def kill() -> None:
        assert server.process is not None
        server.process.kill()
        server.process.wait(10)

    async def fault() -> None:
        await asyncio.to_thread(server.stop if how == "stop" else kill)
        marks["down"] = time.monotonic()
        await answered(traffic.ok_at, 2, marks["down"], 4)  # down until served through
        await asyncio.to_thread(server.start)
        marks["up"] = time.monotonic()

    try:
        asyncio.run(drive(port, fx.key, "bot", traffic, fault))
        served_while_down = sum(1 for t in traffic.ok_at if marks["down"] <= t <= marks["up"])
        stored = logged(fx.tenant.id, traffic.ok, since=marks["up"])
        depth = redis_lib.Redis.from_url(redis_url).xlen("clora:interactions")
    finally:
        proc.terminate()
        proc.wait(20)
        server.stop()
    record(  # before any assertion: a failed run still writes what it saw
        "fault_redis_outage" if how == "stop" else "fault_redis_kill9",
        {
            "fault": (
                "Redis stopped for 4 s under load, then restarted"
                if how == "stop"
                else "kill -9 of Redis under load (appendfsync everysec), restarted after 4 s"
            ),
            "served_ok": len(traffic.ok),
            "served_while_redis_down": served_while_down,
            "failed": len(traffic.failures),
            "accepted_lost": stored.lost,
            "duplicated": stored.duplicated,
            "stream_entries_after": depth,
            "recovery_s": stored.landed_s,
        },
    )
    stored.assert_once()
    assert traffic.failures == []
    assert served_while_down > 0
    assert server.appendfsync == "everysec"  # what the figure is measured with


def test_engine_kill_9_under_load_recovers(
    database_url: str, tmp_path: Path, _clean_test_redis: None
) -> None:
    """The whole vLLM process group dies; requests fail with 503 envelopes meanwhile; once a
    new engine is up, the gateway reloads the adapters it needs and serves again."""
    engine_port = free_port()

    def new_engine() -> EngineProcess:
        return EngineProcess(
            model_dir=MODEL_DIR,
            loras=LoraSlots(max_loras=2, max_lora_rank=16),
            port=engine_port,
            served_model_name=SERVED_MODEL_NAME,
            log_path=tmp_path / "engine.log",
        )

    engines = [new_engine()]
    engines[0].start()
    engines[0].wait_ready(READY_TIMEOUT_S)
    rig = make_rig(database_url, engines[0].url, tmp_path)
    fx, server, port = rig.fx, rig.redis, rig.port
    proc = start_gateway_process(rig.env, port, tmp_path / "gateway.log")
    traffic = Traffic()
    marks: dict[str, float] = {}

    async def fault() -> None:
        pid = engines[0].pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        marks["killed"] = time.monotonic()
        await asyncio.sleep(2)
        marks["restart"] = time.monotonic()
        engines.append(new_engine())
        engines[-1].start()
        await asyncio.to_thread(engines[-1].wait_ready, 240)
        marks["ready"] = time.monotonic()

    try:
        asyncio.run(drive(port, fx.key, "bot", traffic, fault))
        stored = logged(fx.tenant.id, traffic.ok)
    finally:
        proc.terminate()
        proc.wait(20)
        for e in engines:
            e.stop()
        server.stop()
    recovery = traffic.first_ok_after(marks["ready"])
    record(  # before any assertion: a failed run still writes what it saw
        "fault_engine_kill9",
        {
            "fault": "kill -9 of the vLLM process group under load, new engine started",
            "served_ok": len(traffic.ok),
            "failed_while_down": len(traffic.failures),
            "accepted_lost": stored.lost,
            "duplicated": stored.duplicated,
            "engine_restart_s": round(marks["ready"] - marks["restart"], 1),
            "recovery_after_engine_ready_s": None if recovery is None else round(recovery, 2),
        },
    )
    stored.assert_once()
    assert recovery is not None and recovery < 30, recovery
    kinds = {kind for _, kind in traffic.failures}
    allowed = {
        "503",
        "502",
        "APIConnectionError",
        "RemoteProtocolError",
        "stream: engine stream broke off",
    }
    assert kinds <= allowed, kinds
