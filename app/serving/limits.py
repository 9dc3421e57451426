"""Per-tenant request-rate and concurrency limits."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from app.core.errors import RateLimited

log = logging.getLogger(__name__)


class TenantLimits:
    """A fixed-window rate in Redis (shared by replicas) and an in-process concurrency cap."""

    def __init__(self, client: redis.Redis, per_minute: int, max_concurrency: int) -> None:
        self.redis = client
        self.per_minute = per_minute
        self.max_concurrency = max_concurrency
        self._active: dict[uuid.UUID, int] = defaultdict(int)

    def rate_key(self, tenant_id: uuid.UUID) -> str:
        """The Redis counter of the tenant's requests in this minute."""
        return window_key(_rate_prefix(tenant_id))

    def check_rate(self, tenant_id: uuid.UUID, counted: int | None = None) -> None:
        """Count the request in the tenant's minute and refuse it with 429 past the limit;
        ``counted`` is the count with this request in it, when it was taken already (the
        gateway takes it in the round trip that reads the serving generation)."""
        if counted is None:
            per_minute_window(self.redis, _rate_prefix(tenant_id), self.per_minute, "requests")
        else:
            _refuse_over(counted, self.per_minute, "requests")

    def active(self, tenant_id: uuid.UUID) -> int:
        return self._active[tenant_id]

    def acquire(self, tenant_id: uuid.UUID) -> Slot:
        """Take one of the tenant's concurrency slots, or refuse with 429."""
        if self._active[tenant_id] >= self.max_concurrency:
            raise RateLimited(
                f"concurrency limit of {self.max_concurrency} requests in flight exceeded"
            )
        self._active[tenant_id] += 1
        return Slot(self, tenant_id)

    @contextmanager
    def slot(self, tenant_id: uuid.UUID) -> Iterator[Slot]:
        held = self.acquire(tenant_id)
        try:
            yield held
        finally:
            held.release()


class Slot:
    """One request's hold on a concurrency slot; releasing it twice is harmless."""

    def __init__(self, limits: TenantLimits, tenant_id: uuid.UUID) -> None:
        self._limits = limits
        self._tenant_id = tenant_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limits._active[self._tenant_id] -= 1


WINDOW_TTL_S = 120
"""How long a minute's counter outlives its minute."""


def _rate_prefix(tenant_id: uuid.UUID) -> str:
    return f"clora:rate:{tenant_id}"


def window_key(prefix: str) -> str:
    return f"{prefix}:{int(time.time() // 60)}"


def add_count(pipe: redis.client.Pipeline, key: str) -> None:
    """Queue one more count in a minute's window ``key`` (the INCR's reply is the count)."""
    pipe.incr(key)
    pipe.expire(key, WINDOW_TTL_S)


def _count_in_window(client: redis.Redis, key: str, ttl_s: int) -> int | None:
    """One more in the window ``key`` (Redis, so every replica shares it); its count, or None
    with Redis unreachable (the request is then admitted)."""
    try:
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, ttl_s)
        return int(pipe.execute()[0])
    except redis.RedisError:
        log.warning("rate limiter unavailable; admitting request")
        return None


def per_minute_window(client: redis.Redis, prefix: str, limit: int, what: str) -> None:
    """Count one more in this minute's window under ``prefix``; 429 past ``limit``."""
    count = _count_in_window(client, window_key(prefix), WINDOW_TTL_S)
    if count is not None:
        _refuse_over(count, limit, what)


def _refuse_over(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise RateLimited(
            f"rate limit of {limit} {what} per minute exceeded", retry_after_s=60 - time.time() % 60
        )


def per_hour_window(client: redis.Redis, prefix: str, limit: int, what: str) -> None:
    """Count one more in this hour's window under ``prefix``; 429 past ``limit``, with the
    seconds to the next hour."""
    count = _count_in_window(client, f"{prefix}:h{int(time.time() // 3600)}", 7200)
    if count is not None and count > limit:
        raise RateLimited(
            f"limit of {limit} {what} per hour reached", retry_after_s=3600 - time.time() % 3600
        )


def check_writes(client: redis.Redis, owner_id: uuid.UUID, per_minute: int) -> None:
    """A budget of writes per minute: a tenant's (feedback, and every non-GET /api call in
    it), or a signed-in user's (every non-GET /api call of theirs)."""
    per_minute_window(client, f"clora:writes:{owner_id}", per_minute, "writes")
