"""The gateway's route cache: kept per routes generation, never served without one."""

from __future__ import annotations

import time
import uuid

from app.adapters.service import Route
from app.serving.routes import RouteCache

KEY = (uuid.uuid4(), "bot")


def _route(number: int) -> Route:
    return Route(KEY[0], uuid.uuid4(), "bot", uuid.uuid4(), number, f"t/bot@v{number}", "/p")


def test_a_route_is_kept_until_the_generation_moves() -> None:
    cache = RouteCache()
    assert cache.get(KEY, 7) is None
    cache.put(KEY, _route(1), 7)
    assert cache.get(KEY, 7) is not None and cache.get(KEY, 7).version_number == 1  # type: ignore[union-attr]
    assert cache.get(KEY, 8) is None  # a route changed somewhere: everything is dropped
    assert cache.get(KEY, 8) is None


def test_a_route_read_under_an_older_generation_is_not_kept() -> None:
    cache = RouteCache()
    assert cache.get(KEY, 7) is None
    assert cache.get(KEY, 8) is None  # another request saw the newer generation first
    cache.put(KEY, _route(1), 7)
    assert cache.get(KEY, 8) is None


def test_without_redis_nothing_is_cached() -> None:
    cache = RouteCache()
    cache.put(KEY, _route(1), None)
    assert cache.get(KEY, None) is None


def test_a_route_expires_after_its_ttl() -> None:
    cache = RouteCache(ttl_s=0.05)
    cache.get(KEY, 1)
    cache.put(KEY, _route(1), 1)
    assert cache.get(KEY, 1) is not None
    time.sleep(0.06)
    assert cache.get(KEY, 1) is None
