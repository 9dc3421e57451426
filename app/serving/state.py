"""What the gateway keeps between requests: engines, the log buffer, limits, fallbacks."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
from sqlalchemy.exc import OperationalError

from app.adapters.service import Route, resolve
from app.core import generations
from app.core.config import Settings
from app.core.db import get_sessionmaker
from app.core.errors import EngineUnavailable
from app.core.redis import get_redis
from app.interactions.buffer import InteractionBuffer
from app.sampler.identity import IDENTITY_ADAPTER, write_identity_adapter
from app.sampler.pool import EnginePool
from app.serving.limits import TenantLimits, add_count
from app.serving.routes import RouteCache
from app.tenants.service import ApiPrincipal, authenticate

log = logging.getLogger(__name__)


@dataclass
class GatewayState:
    """Process-wide serving state, created in the app's lifespan."""

    settings: Settings
    pool: EnginePool
    buffer: InteractionBuffer
    limits: TenantLimits
    identity_path: str
    in_flight: Counter[str] = field(default_factory=Counter)
    # Records whose append to Redis failed; retried by the drain loop.
    pending: list[dict] = field(default_factory=list)
    # Last known answers, used only while Postgres is unreachable so serving goes on.
    _principals: dict[str, ApiPrincipal] = field(default_factory=dict)
    _routes: dict[tuple[uuid.UUID, str], Route] = field(default_factory=dict)
    # Routes served without a database query until a route changes (app/serving/routes.py).
    routes: RouteCache = field(default_factory=RouteCache)
    _identity_written: bool = False

    @classmethod
    def create(cls, settings: Settings) -> GatewayState:
        urls = settings.engine_urls or [f"http://127.0.0.1:{settings.engine_port}"]
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        redis_client = get_redis()
        return cls(
            settings=settings,
            pool=EnginePool(urls),
            buffer=InteractionBuffer(redis_client, consumer),
            limits=TenantLimits(
                redis_client,
                settings.tenant_rate_limit_per_minute,
                settings.tenant_max_concurrency,
            ),
            identity_path=str(settings.adapter_dir.resolve() / "_identity"),
        )

    def authenticate(self, key: str | None, generation: int | None = None) -> ApiPrincipal:
        try:
            with get_sessionmaker()() as session:
                principal = authenticate(session, key, generation)
        except OperationalError:
            cached = self._principals.get(key or "")
            if cached is None:
                raise EngineUnavailable("database unavailable and key not seen before") from None
            return cached
        self._principals[key or ""] = principal
        return principal

    def generation(self) -> int | None:
        """The serving generation (one Redis GET, on the event loop); None without Redis."""
        return generations.read(self.limits.redis, generations.SERVING)

    def generation_and_count(self, tenant_id: uuid.UUID | None) -> tuple[int | None, int | None]:
        """The serving generation and, for ``tenant_id``, its count of requests this minute with
        this one counted, in one Redis round trip ((generation, None) without a tenant; (None,
        None) without Redis)."""
        if tenant_id is None:
            return self.generation(), None
        key = self.limits.rate_key(tenant_id)
        try:
            pipe = self.limits.redis.pipeline(transaction=False)
            pipe.get(generations.SERVING)
            add_count(pipe, key)
            value, count, _ = pipe.execute()
        except redis.RedisError:
            return None, None
        return (int(value) if value is not None else 0), int(count)

    def cached_route(
        self, principal: ApiPrincipal, model: str, generation: int | None
    ) -> Route | None:
        """The route from the cache when nothing it is made of changed since it was read."""
        return self.routes.get((principal.tenant_id, model), generation)

    def resolve(self, principal: ApiPrincipal, model: str, generation: int | None = None) -> Route:
        """The route from Postgres (kept in the cache under ``generation``); while Postgres
        is down, the last route seen for this model."""
        cache_key = (principal.tenant_id, model)
        try:
            with get_sessionmaker()() as session:
                route = resolve(session, principal.tenant_id, principal.tenant_slug, model)
        except OperationalError:
            cached = self._routes.get(cache_key)
            if cached is None:
                raise EngineUnavailable("database unavailable and model not seen before") from None
            return cached
        self._routes[cache_key] = route
        self.routes.put(cache_key, route, generation)
        return route

    def engine_target(self, route: Route) -> tuple[str, str]:
        if not self.settings.engine_enabled:
            raise EngineUnavailable("this gateway runs without an engine (--no-engine)")
        if route.engine_name is None or route.path is None:
            if not self._identity_written:  # a stat once, not on every base-model request
                if not identity_exists(self.identity_path):
                    write_identity_adapter(self.settings.base_model_path, Path(self.identity_path))
                self._identity_written = True
            return IDENTITY_ADAPTER, self.identity_path
        return route.engine_name, route.path

    def retired_names(self) -> set[str]:
        from app.adapters.repository import AdapterVersionRepository
        from app.models.enums import AdapterStatus

        with get_sessionmaker()() as session:
            repo = AdapterVersionRepository(session)
            return set(
                repo.engine_names_with_status([AdapterStatus.retired, AdapterStatus.rejected])
            )

    async def retire_idle(self) -> list[str]:
        """Unload retired versions from the engines once no request of ours is using them.

        A pinned request for one later simply loads it again."""
        loaded = {name for replica in self.pool.replicas for name in replica.loaded}
        if not loaded:
            return []
        retired = await asyncio.to_thread(self.retired_names)
        idle = sorted(n for n in loaded & retired if self.in_flight.get(n, 0) == 0)
        for name in idle:
            await self.pool.unload(name)
        return idle

    async def retire_forever(self, interval_s: float = 30.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.retire_idle()
            except Exception as exc:  # noqa: BLE001 - retiring is housekeeping; never stop it
                log.warning("adapter retirement sweep failed (%s)", type(exc).__name__)

    async def drain_forever(self, interval_s: float = 0.5) -> None:
        """Move buffered interactions into Postgres until cancelled; survives outages."""
        sessions = get_sessionmaker()
        while True:
            while self.pending:
                try:
                    self.buffer.append(self.pending[0])
                except Exception:  # noqa: BLE001 - Redis still down; keep them
                    break
                self.pending.pop(0)
            try:
                written = await asyncio.to_thread(self.buffer.drain_once, sessions)
            except Exception as exc:  # noqa: BLE001 - keep draining through outages
                log.warning("interaction drain failed (%s); retrying", type(exc).__name__)
                written = 0
            if not written:
                await asyncio.sleep(interval_s)


def identity_exists(path: str) -> bool:
    return Path(path, "adapter_model.safetensors").exists()
