"""The gateway's view of the vLLM replicas: which adapters each holds, and calls to them."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import httpx

from app.core.errors import EngineUnavailable

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

    def __init__(self, urls: list[str], timeout_s: float = 600.0) -> None:
        if not urls:
            raise ValueError("at least one engine URL is needed")
        self.replicas = [EngineReplica(u.rstrip("/")) for u in urls]
        self._rr = itertools.cycle(range(len(self.replicas)))
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        self.http = httpx.AsyncClient(timeout=timeout_s, limits=limits)

    async def close(self) -> None:
        await self.http.aclose()

    def pick(self, adapter_name: str) -> EngineReplica:
        """A replica that already holds the adapter if any does, else the next in turn."""
        holding = [r for r in self.replicas if adapter_name in r.loaded]
        if holding:
            return holding[next(self._rr) % len(holding)]
        return self.replicas[next(self._rr)]

    async def load(self, replica: EngineReplica, name: str, path: str) -> None:
        """Load ``path`` under ``name``; an engine that already has it counts as success."""
        try:
            resp = await self.http.post(
                f"{replica.url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path}
            )
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"engine {replica.url} unreachable: {exc}") from exc
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
                await self.http.post(
                    f"{replica.url}/v1/unload_lora_adapter", json={"lora_name": name}
                )
            except httpx.TransportError:
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
