"""The `clora` command."""

from __future__ import annotations

import logging
import os
import sys

import click

from app.core.config import ConfigError, Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def attach() -> Settings:
    """Settings with the URLs of the running embedded stack filled in."""
    return _attach(_settings())


def _attach(settings: Settings) -> Settings:
    """Fill in the URLs of a running embedded stack for commands other than `up`."""
    from app.stack import read_runtime_env

    runtime = read_runtime_env(settings.data_dir)
    for key, value in runtime.items():
        os.environ.setdefault(key, value)
    from app.core.config import get_settings

    get_settings.cache_clear()
    attached = get_settings()
    if attached.database_url is None:
        raise click.ClickException(
            "no database: run `clora up` first, or set CLORA_DATABASE_URL and CLORA_REDIS_URL"
        )
    return attached


@click.group()
def main() -> None:
    """clora: continual multi-tenant LoRA learning."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--redis-port", default=6390, show_default=True, help="Embedded Redis port.")
@click.option("--engine/--no-engine", default=True, help="Start the embedded vLLM engine.")
def up(redis_port: int, engine: bool) -> None:
    """Start clora: embedded Postgres and Redis unless URLs are set, then every service."""
    from app.stack import Stack

    Stack(_settings(), redis_port=redis_port, with_engine=engine).run()


@main.command()
def trainer() -> None:
    """Run the trainer service: claim training jobs from the queue until stopped."""
    attach()
    from app.training.service import main as serve

    serve()


@main.command()
def migrate() -> None:
    """Apply database migrations to CLORA_DATABASE_URL."""
    from app import migrate as migrations

    settings = _attach(_settings())
    assert settings.database_url is not None
    migrations.upgrade(settings.database_url)
    click.echo("migrated to head")


@main.group()
def tenant() -> None:
    """Tenants, agents and API keys."""


@tenant.command("create")
@click.argument("slug")
@click.option("--name", default=None)
def tenant_create(slug: str, name: str | None) -> None:
    """Create a tenant."""
    from app.core.db import unit_of_work
    from app.core.errors import CloraError
    from app.tenants.service import create_tenant

    _attach(_settings())
    try:
        with unit_of_work() as session:
            created = create_tenant(session, slug, name)
            click.echo(f"tenant {created.slug} created ({created.id})")
    except CloraError as exc:
        raise click.ClickException(exc.message) from exc


@tenant.command("key")
@click.argument("slug")
@click.option("--name", default="cli key")
def tenant_key(slug: str, name: str) -> None:
    """Create an API key for a tenant; it is printed once."""
    from app.core.db import unit_of_work
    from app.tenants.repository import TenantRepository
    from app.tenants.service import create_api_key

    _attach(_settings())
    with unit_of_work() as session:
        found = TenantRepository(session).get_by_slug(slug)
        if found is None:
            raise click.ClickException(f"no tenant {slug!r}")
        _, plaintext = create_api_key(session, found.id, name)
    click.echo(plaintext)


@tenant.command("agent")
@click.argument("slug")
@click.argument("agent_name")
@click.option("--rank", default=16, show_default=True)
def tenant_agent(slug: str, agent_name: str, rank: int) -> None:
    """Create an agent (one adapter lineage) for a tenant."""
    from app.agents.service import create_agent
    from app.core.db import unit_of_work
    from app.core.errors import CloraError
    from app.tenants.repository import TenantRepository

    _attach(_settings())
    try:
        with unit_of_work() as session:
            found = TenantRepository(session).get_by_slug(slug)
            if found is None:
                raise click.ClickException(f"no tenant {slug!r}")
            create_agent(session, found.id, agent_name, lora_rank=rank, lora_alpha=2 * rank)
    except CloraError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"agent {agent_name} created for {slug}")


from app.cli_experiments import experiment  # noqa: E402
from app.cli_learning import adapter, cycle, dataset  # noqa: E402

main.add_command(cycle)
main.add_command(adapter)
main.add_command(dataset)
main.add_command(experiment)


@main.group()
def bench() -> None:
    """Benchmarks (print a table, write JSON and a plot under bench/results/)."""


@bench.command("experiments", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_experiments(args: tuple[str, ...]) -> None:
    """N concurrent RL experiments vs serial warm and serial cold (see bench/experiments.py)."""
    import subprocess

    from app.core.config import REPO_ROOT

    cmd = [sys.executable, "-m", "bench.experiments", *args]
    raise SystemExit(subprocess.call(cmd, cwd=REPO_ROOT))


if __name__ == "__main__":
    sys.exit(main())
