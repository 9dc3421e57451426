"""A database for benchmarks: a fresh one on the local server, or an embedded pgserver."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A migrated, empty database, dropped (or stopped) afterwards."""
    from app.runtime import migrate

    admin = os.environ.get("CLORA_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            name = f"clora_bench_{uuid.uuid4().hex[:8]}"
            conn.execute(f'CREATE DATABASE "{name}"')
        url = admin.rpartition("/")[0] + "/" + name
        migrate.upgrade(url)
        try:
            yield url
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    except psycopg.OperationalError:
        pass
    from app.runtime.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="clora-bench-")))
    url = pg.start()
    migrate.upgrade(url)
    try:
        yield url
    finally:
        pg.stop()
