"""Shared fixtures: a fresh database on the real Postgres, the real Redis, transactional sessions."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from tests.helpers.database import TEST_REDIS_URL, create_database, drop_database

# Each checkout's suite keeps its temporary folders under a root of its own, outside the
# checkout (the compose topology mounts the checkout into its services). pytest makes the shared
# /tmp/pytest-of-<user> private again (chmod go-rwx) at the start of every session, while an
# embedded Postgres (pgserver, running as its own user) reaches its data dir only through that
# folder: a second suite starting on the machine cut the first one's stacks off from their
# databases (PANIC: could not open pg_control: Permission denied).
_CHECKOUT = Path(__file__).resolve().parents[1]
TEMP_ROOT = Path(tempfile.gettempdir()) / (
    "clora-tests-" + hashlib.sha1(str(_CHECKOUT).encode()).hexdigest()[:10]
)
TEMP_ROOT.mkdir(exist_ok=True)
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(TEMP_ROOT))

# Every fixture module, for every tier (pytest only takes pytest_plugins in the root conftest).
pytest_plugins = [
    "tests.helpers.engine",
    "tests.helpers.gateway",
    "tests.helpers.worker",
    "tests.helpers.tiny",
]


@pytest.fixture(scope="session", autouse=True)
def _clean_test_redis() -> None:
    """Each run starts from an empty test Redis database (streams, queues, rate windows)."""
    import redis

    redis.Redis.from_url(TEST_REDIS_URL).flushdb()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated database for the whole run, exported as CLORA_DATABASE_URL."""
    from app.runtime import migrate

    url = create_database()
    migrate.upgrade(url)
    os.environ["CLORA_DATABASE_URL"] = url
    os.environ["CLORA_REDIS_URL"] = TEST_REDIS_URL
    os.environ.setdefault("CLORA_ENVIRONMENT", "development")
    from app.core.config import get_settings

    get_settings.cache_clear()
    yield url
    from app.core.db import get_engine

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    drop_database(url)


@pytest.fixture(scope="session")
def sql_engine(database_url: str) -> Iterator[Engine]:
    from app.core.db import normalise_url

    engine = create_engine(normalise_url(database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def db(sql_engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    with sql_engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            outer.rollback()


# ---- figures for docs/RELIABILITY.md: the tenant-isolation attack cases of this run ----------
_ISOLATION = {"cases": 0, "refused": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.nodeid.startswith(
        "tests/integration/test_tenant_isolation.py"
    ):
        _ISOLATION["cases"] += 1
        _ISOLATION["refused"] += int(report.passed)


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.helpers.figures import WRITE_FIGURES, record

    if _ISOLATION["cases"] >= 50:  # only a run of the whole isolation module reports
        record("isolation", dict(_ISOLATION))
    if WRITE_FIGURES and "CLORA_RELIABILITY_OUT" not in os.environ:
        # A run that measured figures re-renders docs/RELIABILITY.md from them.
        from bench.reliability import main as render

        render()
