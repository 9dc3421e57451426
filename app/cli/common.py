"""What every `clora` command group shares: settings, attaching to the running stack,
the tenant option, and turning expected errors into one-line messages."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from app.core.config import ConfigError, Settings
from app.core.errors import CloraError

TENANT = click.option("--tenant", default="demo", show_default=True, help="Tenant slug.")


def settings() -> Settings:
    """Settings from the environment, or a readable error."""
    try:
        return Settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def attach() -> Settings:
    """Settings with the URLs of the running embedded stack filled in."""
    return attach_to(settings())


def attach_to(base: Settings) -> Settings:
    """Fill in the URLs of a running embedded stack for commands other than `up`."""
    from app.core.config import get_settings
    from app.runtime.stack import read_runtime_env

    for key, value in read_runtime_env(base.data_dir).items():
        os.environ.setdefault(key, value)
    get_settings.cache_clear()
    attached = get_settings()
    if attached.database_url is None:
        raise click.ClickException(
            "no database: run `clora up` first, or set CLORA_DATABASE_URL and CLORA_REDIS_URL"
        )
    return attached


def scope(session: Any, tenant_slug: str, agent_name: str | None = None) -> tuple[Any, Any]:
    """(tenant, agent or None) by slug and name, or a readable error."""
    from app.agents.service import get_agent
    from app.tenants.repository import TenantRepository

    tenant = TenantRepository(session).get_by_slug(tenant_slug)
    if tenant is None:
        raise click.ClickException(f"no tenant {tenant_slug!r}")
    agent = get_agent(session, tenant.id, agent_name) if agent_name else None
    return tenant, agent


def readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Attach to the stack, and turn expected errors into a one-line message, not a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from app.cli.remote import remote

        if remote() is None:
            attach()
        try:
            return fn(*args, **kwargs)
        except CloraError as exc:
            raise click.ClickException(exc.message) from exc

    return wrapper
