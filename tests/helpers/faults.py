"""A fault rig: a gateway process, its engine and Redis, and checks that every request is logged once."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import unit_of_work
from app.models import Interaction
from app.runtime.embedded import EmbeddedRedis
from tests.helpers.engine import MODEL_DIR
from tests.helpers.gateway import TenantFixture, free_port, make_tenant


def gateway_env(database_url: str, redis_url: str, engine_url: str, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLORA_")}
    env.update(
        CLORA_DATABASE_URL=database_url,
        CLORA_REDIS_URL=redis_url,
        CLORA_ENGINE_URLS=json.dumps([engine_url]),
        CLORA_DATA_DIR=str(data),
        CLORA_BASE_MODEL_PATH=str(MODEL_DIR),
        CLORA_ENVIRONMENT="development",
        # Load tests, not tests of the tenant's rate limit: a quiet machine serves a few
        # clients more than the default 600 requests a minute.
        CLORA_TENANT_RATE_LIMIT_PER_MINUTE="1000000",
    )
    return env


async def answered(
    times: list[float], at_least: int, since: float, minimum_s: float, limit_s: float = 60
) -> None:
    """Let traffic run ``minimum_s``, then on until ``at_least`` of the answers timed in
    ``times`` came back after ``since``, up to ``limit_s`` from ``since``: traffic measured in
    answers, not seconds (a loaded engine answers a few a second, a quiet one dozens)."""
    await asyncio.sleep(minimum_s)
    while sum(t >= since for t in times) < at_least and time.monotonic() < since + limit_s:
        await asyncio.sleep(0.1)


@dataclass
class Traffic:
    """What the clients saw: completion ids that succeeded, failures with their time."""

    ok: list[str] = field(default_factory=list)
    ok_at: list[float] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)

    def first_ok_after(self, moment: float) -> float | None:
        later = [t for t in self.ok_at if t >= moment]
        return min(later) - moment if later else None


async def drive(
    port: int, key: str, model: str, traffic: Traffic, fault: Callable[[], Awaitable[None]]
) -> None:
    """Four clients (every other request streamed) run for 3 s and until 3 answers came back
    before `fault()`, and as long again after it returned (up to a minute each way: a loaded
    engine answers a few a second, a quiet one dozens)."""
    stop = asyncio.Event()

    async def client_loop(n: int) -> None:
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=30
        )
        i = 0
        while not stop.is_set():
            i += 1
            messages = [{"role": "user", "content": f"client {n} request {i}"}]
            try:
                if i % 2:
                    resp = await client.chat.completions.create(
                        model=model,
                        messages=messages,
                        max_tokens=4,  # type: ignore[arg-type]
                    )
                    completion = resp.id
                else:
                    stream = await client.chat.completions.create(
                        model=model,
                        messages=messages,
                        max_tokens=4,
                        stream=True,  # type: ignore[arg-type]
                    )
                    completion = ""
                    async for chunk in stream:
                        completion = chunk.id
                traffic.ok.append(completion)
                traffic.ok_at.append(time.monotonic())
            except openai.APIStatusError as exc:
                assert exc.status_code < 500 or exc.status_code in (502, 503), exc
                traffic.failures.append((time.monotonic(), f"{exc.status_code}"))
                await asyncio.sleep(0.2)
            except (openai.APIConnectionError, httpx.HTTPError) as exc:
                traffic.failures.append((time.monotonic(), type(exc).__name__))
                await asyncio.sleep(0.2)
            except openai.APIError as exc:  # an error event inside a stream that broke off
                traffic.failures.append((time.monotonic(), f"stream: {exc.message}"))
                await asyncio.sleep(0.2)

    loops = [asyncio.create_task(client_loop(n)) for n in range(4)]
    await answered(traffic.ok_at, 3, time.monotonic(), 3)
    await fault()
    await answered(traffic.ok_at, 3, time.monotonic(), 3)
    stop.set()
    await asyncio.gather(*loops)


@dataclass(frozen=True)
class Logged:
    """What became of the completions the clients were told succeeded."""

    lost: int
    """Accepted completions with no interaction row."""
    duplicated: int
    """Interaction rows beyond one per request content (each request's text is unique)."""
    landed_s: float
    """Seconds from ``since`` until every accepted completion had its row."""
    accepted: int = 0
    """Completions the clients were told succeeded."""

    def assert_once(self) -> None:
        """Nothing accepted was lost, nothing stored twice."""
        assert self.lost == 0, f"{self.lost} of {self.accepted} accepted interactions were lost"
        assert self.duplicated == 0, f"{self.duplicated} interactions were stored twice"


def logged(
    tenant_id: uuid.UUID,
    ids: list[str],
    since: float | None = None,
    timeout_s: float = 90,
    sessions: Callable[[], Session] | None = None,
) -> Logged:
    """Wait (up to ``timeout_s``) for every completion the clients saw to have its interaction
    row, then count what is missing and what is stored twice, by the request's text
    (``sessions``: another database than the session's)."""
    expected = {uuid.UUID(hex=i.removeprefix("chatcmpl-")) for i in ids}
    assert len(expected) == len(ids), "a completion id was handed out twice"
    since = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout_s
    while True:
        with (sessions or unit_of_work)() as session:
            rows = session.execute(
                select(Interaction.id, Interaction.request).where(
                    Interaction.tenant_id == tenant_id
                )
            ).all()
        missing = expected - {r.id for r in rows}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    landed = time.monotonic() - since
    texts = Counter(json.dumps((r.request or {}).get("messages")) for r in rows)
    duplicated = sum(n - 1 for n in texts.values())
    return Logged(
        len(missing), duplicated, round(landed, 2) if not missing else -1.0, accepted=len(ids)
    )


def assert_logged_once(
    tenant_id: uuid.UUID,
    ids: list[str],
    since: float | None = None,
    timeout_s: float = 90,
    sessions: Callable[[], Session] | None = None,
) -> Logged:
    """`logged`, asserting that nothing accepted was lost and nothing stored twice (a test
    that records these counts calls `logged`, records, then `Logged.assert_once`)."""
    result = logged(tenant_id, ids, since, timeout_s, sessions)
    result.assert_once()
    return result


@dataclass
class Rig:
    """A tenant, a private Redis and the settings of a gateway process on its own port."""

    fx: TenantFixture
    redis: EmbeddedRedis
    redis_url: str
    port: int
    env: dict[str, str]


def make_rig(database_url: str, engine_url: str, tmp_path: Path) -> Rig:
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    redis_url = server.start()
    env = gateway_env(database_url, redis_url, engine_url, tmp_path / "data")
    return Rig(make_tenant("bot"), server, redis_url, free_port(), env)


def where_everything_waits() -> str:
    """Every thread's stack and every running event loop's tasks in this process: what a test
    prints when a request hangs, so the next failure names the line it waited on."""
    import gc
    import sys
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append(f"--- thread {names.get(ident, ident)}")
        out.extend(line.rstrip() for line in traceback.format_stack(frame, limit=12))
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if not loop.is_running():
            continue
        for _ in range(3):  # the set of tasks may change under us: another thread runs it
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                tasks = []
        out.append(f"--- loop {id(loop):#x}: {len(tasks)} tasks")
        for task in tasks:
            out.append(f"task {task.get_name()}:")
            for frame in task.get_stack(limit=8):
                out.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
    return "\n".join(out)
