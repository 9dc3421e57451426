"""The process-wide Redis client."""

from __future__ import annotations

from functools import lru_cache

import redis

from app.core.config import get_settings


@lru_cache
def get_redis() -> redis.Redis:
    url = get_settings().redis_url
    if url is None:
        raise RuntimeError("CLORA_REDIS_URL is not set; `clora up` sets it for embedded mode")
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
