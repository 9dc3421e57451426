"""The embedded Redis runs with the fsync policy `clora up` is configured with."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import redis

from app.core.config import Settings
from app.runtime.embedded import EmbeddedRedis
from app.runtime.stack import Stack
from tests.helpers.gateway import free_port


@pytest.mark.parametrize("policy", [None, "always", "everysec"])
def test_the_stack_starts_redis_with_the_configured_appendfsync(
    tmp_path: Path, policy: str | None
) -> None:
    given = {"redis_appendfsync": policy} if policy else {}
    settings = Settings(
        data_dir=tmp_path, database_url="postgresql://unused", redis_url=None, **given
    )
    stack = Stack(settings, redis_port=free_port(), with_engine=False)
    stack.start_services()
    assert stack.redis is not None
    try:
        client = redis.Redis.from_url(stack.redis.url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == (policy or "everysec")
    finally:
        stack.redis.stop()


def test_an_unknown_appendfsync_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="redis_appendfsync"):
        Settings(redis_appendfsync="sometimes")


def test_embedded_redis_defaults_to_everysec(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, free_port())
    server.start()
    try:
        config = redis.Redis.from_url(server.url).config_get("appendfsync")
        assert config["appendfsync"] == "everysec"
    finally:
        server.stop()
