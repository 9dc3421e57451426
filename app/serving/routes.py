"""The gateway's cache of routes (which adapter version serves ``agent`` or ``agent@vN``).

Resolving a route reads the agent and its version from Postgres; doing it for every request
costs a database round trip and, under load, a wait for a pooled connection. The cache keeps
each route until the serving generation moves (any commit that changed an agent, a version, a
tenant or a key, in any process: ``app.core.generations.SERVING``) and at most ``ttl_s`` (a
backstop for a bump lost while Redis was down).
Each use reads the generation from Redis (one GET); with Redis unreachable nothing is served
from the cache, so a promotion is never missed.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from app.adapters.service import Route

RouteKey = tuple[uuid.UUID, str]


@dataclass
class RouteCache:
    ttl_s: float = 60.0
    _generation: int | None = None
    _entries: dict[RouteKey, tuple[float, Route]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: RouteKey, generation: int | None) -> Route | None:
        """The cached route when it was stored under this generation and is fresh."""
        if generation is None:
            return None
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
                return None
            hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: RouteKey, route: Route, generation: int | None) -> None:
        """Keep a route read from the database after ``generation`` was read; a route read
        while a newer commit landed is not kept (the generation has moved on)."""
        if generation is None:
            return
        with self._lock:
            if generation == self._generation:
                self._entries[key] = (time.monotonic() + self.ttl_s, route)
