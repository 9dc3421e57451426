"""Model output that UTF-8 or Postgres text cannot hold (a NUL, a lone surrogate) is served to
the caller as the engine wrote it, stored losslessly, and blocks none of the rows behind it.

The engine here is the real one behind a proxy that rewrites one answer's text into such
output (vLLM's own answers never carry a lone surrogate; a model's text can carry a NUL).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import openai
import pytest
from aiohttp import web
from sqlalchemy import select

from app.core.db import unit_of_work
from app.core.redis import get_redis
from app.interactions.buffer import InteractionBuffer
from app.models import Interaction
from app.sampler.launcher import EngineProcess
from tests.helpers.engine import MODEL_DIR
from tests.helpers.gateway import free_port, make_tenant, start_gateway_process

pytestmark = pytest.mark.slow

HOSTILE = "a\x00b\ud800c"
"""What the proxy makes the model answer: a NUL and a lone surrogate."""


@pytest.fixture
def hostile_engine(engine: EngineProcess) -> Iterator[str]:
    """The engine's URL behind a proxy that answers a chat whose last message starts with
    "hostile" with `HOSTILE` as its text, written as JSON escapes the way a server would."""
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, engine.url + request.path_qs, data=body, headers=headers
            ) as resp,
        ):
            answer = await resp.read()
            status, kind = resp.status, resp.content_type
        sent = json.loads(body) if body and kind == "application/json" else {}
        messages = sent.get("messages") or [{}]
        if status == 200 and str(messages[-1].get("content", "")).startswith("hostile"):
            parsed = json.loads(answer)
            parsed["choices"][0]["message"]["content"] = HOSTILE
            answer = json.dumps(parsed).encode()  # "\u0000" and "\ud800" as escapes
        return web.Response(body=answer, status=status, content_type=kind)

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True
    )
    thread.start()
    assert ready.wait(30)
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_output_postgres_text_cannot_hold_is_served_and_stored_as_the_engine_wrote_it(
    hostile_engine: str, database_url: str, tmp_path: Path
) -> None:
    fx = make_tenant()
    env = {
        **os.environ,  # the suite's Redis among them
        "CLORA_DATABASE_URL": database_url,
        "CLORA_ENGINE_URLS": json.dumps([hostile_engine]),
        "CLORA_DATA_DIR": str(tmp_path / "data"),
        "CLORA_BASE_MODEL_PATH": str(MODEL_DIR),
    }
    port = free_port()
    proc = start_gateway_process(env, port, tmp_path / "gateway.log")
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=fx.key)
        ids, texts = [], ["before 1", "before 2", "hostile", "after 1", "after 2", "after 3"]
        for text in texts:
            resp = client.chat.completions.create(
                model=fx.agent.name, messages=[{"role": "user", "content": text}], max_tokens=4
            )
            ids.append(resp.id)
            if text == "hostile":
                # Served unchanged: the caller reads back the very text the engine wrote.
                assert resp.choices[0].message.content == HOSTILE
        raw = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"Authorization": f"Bearer {fx.key}"},
            json={
                "model": fx.agent.name,
                "messages": [{"role": "user", "content": "hostile"}],
                "max_tokens": 4,
            },
            timeout=60,
        )
        assert raw.status_code == 200 and b"\\ud800" in raw.content and b"\\u0000" in raw.content
        ids.append(raw.json()["id"])

        deadline, stored = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            with unit_of_work() as session:
                rows = session.scalars(
                    select(Interaction).where(Interaction.agent_id == fx.agent.id)
                ).all()
                stored = [(r.request["messages"][-1]["content"], r.output) for r in rows]
            if len(stored) == len(ids):
                break
            time.sleep(0.5)
        print(sorted(text for text, _ in stored))  # shown on failure: which rows landed
        # Every row landed, the hostile ones too, and their text reads back unchanged.
        assert sorted(text for text, _ in stored) == sorted([*texts, "hostile"])
        hostile = [output for text, output in stored if text == "hostile"]
        assert [o["content"] for o in hostile] == [HOSTILE, HOSTILE]
        buffer = InteractionBuffer(get_redis(), "test-reader")
        assert [d for d in buffer.dead_entries(1000) if d.tenant_id == fx.tenant.id] == []
    finally:
        proc.terminate()
        proc.wait(30)
