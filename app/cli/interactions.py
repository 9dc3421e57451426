"""`clora interactions`: what the interaction log could not store."""

from __future__ import annotations

import click

from app.cli import remote as rm
from app.cli.common import attach, scope
from app.cli.remote import remote


@click.group()
def interactions() -> None:
    """The interaction log."""


@interactions.command("dead-letters")
@click.option("--tenant", "slug", default=None, help="One tenant's (default: every tenant's).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def dead_letters(slug: str | None, limit: int) -> None:
    """Interaction records the database refused for good, newest first, with the reason. They
    were set aside so that the records behind them landed; the count is also the metric
    clora_interaction_dead_letters."""
    if (api := remote()) is not None:
        click.echo(rm.interactions_dead_letters(api, slug or "", limit))
        return
    from app.core.db import unit_of_work
    from app.core.redis import get_redis
    from app.interactions.service import dead_letter_out
    from app.interactions.service import dead_letters as listed

    attach()
    tenant_id = None
    if slug is not None:
        with unit_of_work() as session:
            tenant_id = scope(session, slug)[0].id
    entries = listed(get_redis(), tenant_id, limit)
    for e in entries:
        out = dead_letter_out(e)
        click.echo(rm.dead_letter_line(out.at.isoformat(), out.interaction_id, e.entry_id, e.error))
    if not entries:
        click.echo("no interaction record was refused")
