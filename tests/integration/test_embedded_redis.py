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


def test_clora_up_takes_the_embedded_redis_port_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second stack on one host needs its own Redis port: `CLORA_EMBEDDED_REDIS_PORT`."""
    from click.testing import CliRunner

    from app.cli.stack import up

    port = free_port()
    started: list[str] = []

    def start_only(stack: Stack) -> None:  # the services, not the whole supervisor
        stack.start_services()
        assert stack.redis is not None
        started.append(stack.redis.url)
        redis.Redis.from_url(stack.redis.url).ping()
        stack.redis.stop()

    monkeypatch.setattr(Stack, "run", start_only)
    env = {
        "CLORA_EMBEDDED_REDIS_PORT": str(port),
        "CLORA_DATA_DIR": str(tmp_path),
        "CLORA_DATABASE_URL": "postgresql://unused",
        "CLORA_REDIS_URL": None,
    }
    result = CliRunner().invoke(up, [], env=env)
    assert result.exit_code == 0, result.output
    assert started and f"127.0.0.1:{port}/" in started[0], started
