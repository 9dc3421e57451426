"""The test Postgres and Redis: fresh databases on the real server, the test Redis URL."""

from __future__ import annotations

import os
import uuid

import psycopg

ADMIN_URL = os.environ.get("CLORA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("CLORA_TEST_REDIS", "redis://127.0.0.1:6379/15")
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
