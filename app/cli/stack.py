"""`clora up`, `clora trainer`, `clora migrate`: the processes and the schema."""

from __future__ import annotations

import click

from app.cli.common import attach, attach_to, settings


@click.command()
@click.option(
    "--redis-port",
    envvar="CLORA_EMBEDDED_REDIS_PORT",
    default=6390,
    show_default=True,
    help="Embedded Redis port (env CLORA_EMBEDDED_REDIS_PORT); a second stack on one host "
    "needs its own.",
)
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


@click.command()
def ps() -> None:
    """Each process of the running stack: resident memory, and whether it maps the base
    model's weights (of clora's own processes only the trainer should; vLLM copies them)."""
    from app.runtime.processes import stack_memory

    base = settings()
    rows = stack_memory(base.data_dir, base.base_model_path)
    if not rows:
        raise click.ClickException(f"no running stack in {base.data_dir}: start `clora up`")
    click.echo(f"{'process':<10} {'pid':>8} {'procs':>5} {'RSS MiB':>9}  base weights")
    for r in rows:
        held = "yes" if r.holds_base_weights else "no"
        click.echo(f"{r.name:<10} {r.pid:>8} {r.processes:>5} {r.rss_mb:>9.1f}  {held}")
    click.echo(f"{'total':<10} {'':>8} {'':>5} {sum(r.rss_mb for r in rows):>9.1f}")
