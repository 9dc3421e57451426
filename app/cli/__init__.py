"""The `clora` command: one module per command group, assembled here."""

from __future__ import annotations

import click

from app.cli.bench import bench
from app.cli.experiments import experiment
from app.cli.interactions import interactions
from app.cli.learning import adapter, cycle, dataset
from app.cli.remote import LOCAL_ONLY, Remote
from app.cli.stack import migrate, ps, trainer, up
from app.cli.tenants import tenant
from app.cli.users import user
from app.core.logging import configure as configure_logging


@click.group()
@click.option(
    "--url",
    envvar="CLORA_URL",
    default=None,
    help="A deployed clora (its gateway's URL): run the admin command through its HTTP API.",
)
@click.option(
    "--token",
    envvar="CLORA_TOKEN",
    default=None,
    help="Personal access token for --url (`clora user token EMAIL` on the server).",
)
@click.pass_context
def main(ctx: click.Context, url: str | None, token: str | None) -> None:
    """clora: continual multi-tenant LoRA learning."""
    configure_logging(json_logs=False, level="WARNING")
    if url is None:
        return
    if not token:
        raise click.UsageError("--url needs --token (or CLORA_TOKEN): a personal access token")
    if ctx.invoked_subcommand in LOCAL_ONLY:
        raise click.UsageError(
            f"`clora {ctx.invoked_subcommand}` runs on the server itself; --url is for the "
            "admin commands (tenant, user, cycle, adapter, dataset, experiment, interactions)"
        )
    ctx.obj = Remote(url, token)


for command in (
    up,
    ps,
    trainer,
    migrate,
    tenant,
    user,
    cycle,
    adapter,
    dataset,
    experiment,
    interactions,
    bench,
):
    main.add_command(command)
