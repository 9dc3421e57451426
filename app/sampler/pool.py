"""The gateway's view of the vLLM replicas: which adapters each holds, and calls to them.

Calls go through aiohttp: httpx's connection pool scans every pooled connection (a socket
check each) for every request, which at 64 requests in flight was a third of the gateway's
CPU, taken from the engine on a shared host (bench/gateway_overhead.py).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx

from app.core import jsonio
from app.core.errors import EngineUnavailable
from trainer.envs import sampler_http
from trainer.envs.sampler_http import TRANSPORT_ERRORS


class EngineResponse:
    """The engine's answer: status, the body (read whole, or line by line for a stream)."""

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self.raw = raw
        self._body: bytes | None = None

    @property
    def status_code(self) -> int:
        return self.raw.status

    async def aread(self) -> bytes:
        if self._body is None:
            self._body = await self.raw.read()
        return self._body

    def json(self) -> Any:
        """The body read by ``aread`` as JSON."""
        return jsonio.loads(self._body or b"")

    @property
    def text(self) -> str:
        return (self._body or b"").decode(errors="replace")

    async def aiter_lines(self) -> AsyncIterator[str]:
        async for line in self.raw.content:
            yield line.decode().rstrip("\r\n")

    async def aclose(self) -> None:
        self.raw.release()


log = logging.getLogger(__name__)


class AdapterUnknownToEngine(Exception):
    """The engine answered that it does not know a model name (restart or eviction)."""


@dataclass
class EngineReplica:
    """One vLLM OpenAI server and the adapter names we believe it holds."""

    url: str
    loaded: set[str] = field(default_factory=set)


class EnginePool:
    """Every replica of the shared engine; adapters load on every replica."""

    def __init__(
        self,
        urls: list[str],
        timeout_s: float = 600.0,
        idle_drop_s: float = sampler_http.IDLE_DROP_S,
    ) -> None:
        if not urls:
            raise ValueError("at least one engine URL is needed")
        self.replicas = [EngineReplica(u.rstrip("/")) for u in urls]
        self._rr = itertools.cycle(range(len(self.replicas)))
        # No limit on a whole answer (a stream may last); a silent engine fails after timeout_s.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_s)
        self._idle_drop_s = idle_drop_s
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """One session per pool, made on first use inside the gateway's event loop, with the
        sampler's connection policy (`trainer.envs.sampler_http`)."""
        if self._session is None or self._session.closed:
            self._session = sampler_http.open_session(self._timeout, idle_drop_s=self._idle_drop_s)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, body: dict[str, Any], stream: bool = False) -> EngineResponse:
        """POST JSON; the whole body is read unless ``stream``. EngineUnavailable when the
        engine cannot be reached. A request the engine closed before answering is tried once
        more (`sampler_http.post`)."""
        try:
            resp = EngineResponse(await sampler_http.post(self._http(), url, jsonio.dumps(body)))
            if not stream:
                await resp.aread()
            return resp
        except TRANSPORT_ERRORS as exc:
            raise EngineUnavailable(f"engine unreachable: {type(exc).__name__}") from exc

    def pick(self, adapter_name: str) -> EngineReplica:
        """A replica that already holds the adapter if any does, else the next in turn."""
        holding = [r for r in self.replicas if adapter_name in r.loaded]
        if holding:
            return holding[next(self._rr) % len(holding)]
        return self.replicas[next(self._rr)]

    async def load(self, replica: EngineReplica, name: str, path: str) -> None:
        """Load ``path`` under ``name``; an engine that already has it counts as success."""
        resp = await self.post(
            f"{replica.url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": path}
        )
        if resp.status_code == 200 or (resp.status_code == 400 and "already" in resp.text):
            replica.loaded.add(name)
            return
        raise EngineUnavailable(f"engine refused adapter {name}: {resp.status_code} {resp.text}")

    async def load_everywhere(self, name: str, path: str) -> None:
        for replica in self.replicas:
            await self.load(replica, name, path)

    async def unload(self, name: str) -> None:
        for replica in self.replicas:
            if name not in replica.loaded:
                continue
            replica.loaded.discard(name)
            try:
                await self.post(f"{replica.url}/v1/unload_lora_adapter", {"lora_name": name})
            except EngineUnavailable:
                log.warning("could not unload %s from %s", name, replica.url)

    def healthy_sync(self) -> bool:
        """Every replica answers /health (called from a worker thread)."""
        for replica in self.replicas:
            try:
                if httpx.get(f"{replica.url}/health", timeout=2.0).status_code != 200:
                    return False
            except httpx.TransportError:
                return False
        return True
