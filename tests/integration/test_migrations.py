"""The migration chain goes up, all the way down, and up again on a real Postgres."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from app.core.db import normalise_url
from app.models import Base
from app.runtime import migrate
from tests.helpers.database import create_database, drop_database


def _tables(url: str) -> set[str]:
    engine = create_engine(normalise_url(url))
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade() -> None:
    url = create_database()
    try:
        migrate.upgrade(url)
        assert _tables(url) == set(Base.metadata.tables)
        migrate.downgrade(url, "base")
        assert _tables(url) == set()
        migrate.upgrade(url)
        assert _tables(url) == set(Base.metadata.tables)
    finally:
        drop_database(url)


def test_models_match_migrations(database_url: str) -> None:
    """Autogenerate finds nothing to add: the ORM and the migration chain agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
