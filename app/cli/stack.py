"""`clora up`, `clora trainer`, `clora migrate`: the processes and the schema."""

from __future__ import annotations

import click

from app.cli.common import attach, attach_to, settings


@click.command()
@click.option("--redis-port", default=6390, show_default=True, help="Embedded Redis port.")
@click.option("--engine/--no-engine", default=True, help="Start the embedded vLLM engine.")
def up(redis_port: int, engine: bool) -> None:
    """Start clora: embedded Postgres and Redis unless URLs are set, then every service."""
    from app.core.config import ConfigError
    from app.runtime.stack import Stack

    try:
        Stack(settings(), redis_port=redis_port, with_engine=engine).run()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
def trainer() -> None:
    """Run the trainer service: claim training jobs from the queue until stopped."""
    attach()
    from app.training.daemon import main as serve

    serve()


@click.command()
def migrate() -> None:
    """Apply database migrations to CLORA_DATABASE_URL."""
    from app.runtime import migrate as migrations

    attached = attach_to(settings())
    assert attached.database_url is not None
    migrations.upgrade(attached.database_url)
    click.echo("migrated to head")
