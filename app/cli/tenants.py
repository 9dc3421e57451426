"""`clora tenant`: tenants, agents and API keys."""

from __future__ import annotations

import click

from app.cli import remote as rm
from app.cli.common import attach
from app.cli.remote import remote


@click.group()
def tenant() -> None:
    """Tenants, agents and API keys."""


@tenant.command("create")
@click.argument("slug")
@click.option("--name", default=None)
def tenant_create(slug: str, name: str | None) -> None:
    """Create a tenant."""
    if (api := remote()) is not None:
        click.echo(rm.tenant_create(api, slug, name))
        return
    from app.core.db import unit_of_work
    from app.core.errors import CloraError
    from app.tenants.service import create_tenant

    attach()
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
    if (api := remote()) is not None:
        click.echo(rm.tenant_key(api, slug, name))
        return
    from app.core.db import unit_of_work
    from app.tenants.repository import TenantRepository
    from app.tenants.service import create_api_key

    attach()
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
    if (api := remote()) is not None:
        click.echo(rm.tenant_agent(api, slug, agent_name, rank))
        return
    from app.agents.schemas import AgentIn
    from app.agents.service import create_agent
    from app.core.db import unit_of_work
    from app.core.errors import CloraError
    from app.tenants.repository import TenantRepository

    try:
        spec = AgentIn(name=agent_name, lora_rank=rank, lora_alpha=2 * rank)
    except ValueError as exc:  # pydantic's ValidationError: one readable line per field
        raise click.UsageError(str(exc)) from exc
    attach()
    try:
        with unit_of_work() as session:
            found = TenantRepository(session).get_by_slug(slug)
            if found is None:
                raise click.ClickException(f"no tenant {slug!r}")
            create_agent(session, found.id, spec)
    except CloraError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"agent {agent_name} created for {slug}")
