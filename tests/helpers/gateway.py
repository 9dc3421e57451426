"""Pytest plugin: the real gateway (uvicorn, in a thread) in front of the real vLLM engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI

from app.adapters.service import adapter_name, load_into_engines, promote, publish
from app.adapters.storage import copy_from
from app.agents.schemas import AgentIn
from app.agents.service import create_agent
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.models import AdapterVersion, Agent, Interaction, Tenant
from app.runtime.stack import GATEWAY_ENV
from app.sampler.launcher import EngineProcess, free_port
from app.tenants.service import create_api_key, create_tenant
from tests.helpers.engine import MODEL_DIR


@dataclass
class Gateway:
    """A running gateway: its URL and the app (whose ``state.gateway`` tests may inspect)."""

    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    def drain(self) -> int:
        """Flush the interaction buffer into Postgres now."""
        from app.core.db import get_sessionmaker

        return self.app.state.gateway.buffer.drain_all(get_sessionmaker())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_gateway(settings_env: dict[str, str]) -> Gateway:
    """Start a gateway with the given CLORA_* settings on a free port."""
    from app.core.config import get_settings
    from app.core.db import get_engine, get_sessionmaker
    from app.core.redis import get_redis

    os.environ.update(settings_env)
    for cached in (get_settings, get_engine, get_sessionmaker, get_redis):
        cached.cache_clear()
    from app.main import create_app

    app = create_app()
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return Gateway(f"http://127.0.0.1:{port}", app, server, thread)
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("gateway did not start")


def start_gateway_process(
    env: dict[str, str], port: int, log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`uvicorn app.main:app` as its own process (in ``cwd``, whose `app` it then imports);
    returns once /healthz answers."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    proc = subprocess.Popen(
        cmd,
        env={**GATEWAY_ENV, **env},  # as `clora up` and compose run it
        cwd=cwd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(log.read_text())


@pytest.fixture(scope="session")
def gateway(
    database_url: str, engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("gateway-data")
    gw = start_gateway(
        {
            "CLORA_DATABASE_URL": database_url,
            "CLORA_ENGINE_URLS": json.dumps([engine.url]),
            "CLORA_DATA_DIR": str(data_dir),
            "CLORA_BASE_MODEL_PATH": str(MODEL_DIR),
        }
    )
    yield gw
    gw.stop()


@dataclass
class TenantFixture:
    tenant: Tenant
    agent: Agent
    key: str

    def client(self, gw: Gateway) -> openai.OpenAI:
        return openai.OpenAI(base_url=gw.api_base, api_key=self.key, max_retries=0)

    def async_client(self, gw: Gateway) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=gw.api_base, api_key=self.key, max_retries=0)


def make_tenant(agent_name: str = "bot", rank: int = 8, alpha: int = 8) -> TenantFixture:
    """A committed tenant with one agent and one key (gateway sessions must see them).

    Learning tests ask for the product's default adapter shape (rank 16, alpha 32): the cycle
    defaults were measured with it (docs/LEARNING.md)."""
    with unit_of_work() as session:
        tenant = create_tenant(session, f"t-{uuid.uuid4().hex[:10]}")
        agent = create_agent(
            session, tenant.id, AgentIn(name=agent_name, lora_rank=rank, lora_alpha=alpha)
        )
        _, key = create_api_key(session, tenant.id, "test")
    return TenantFixture(tenant, agent, key)


def publish_live(fx: TenantFixture, source: Path) -> AdapterVersion:
    """Publish a folder as the agent's next version and make it live."""
    with unit_of_work() as session:
        tenant = session.get(Tenant, fx.tenant.id)
        assert tenant is not None
        version = publish(session, get_settings(), tenant, fx.agent.id, copy_from(source))
        promote(session, tenant.id, version.id)
    load_into_engines(
        get_settings(), adapter_name(fx.tenant.slug, fx.agent.name, version.number), version.path
    )
    return version


def logged_interaction(gateway: Gateway, interaction_id: uuid.UUID) -> Interaction:
    """The interaction's row once the write-behind log has it (the gateway appends the record
    after the answer is sent, so the first drain may come before it)."""
    deadline = time.monotonic() + 15
    while True:
        gateway.drain()
        with unit_of_work() as session:
            row = session.get(Interaction, interaction_id)
            if row is not None:
                session.expunge(row)
                return row
        assert time.monotonic() < deadline, "interaction was not logged"
        time.sleep(0.2)
