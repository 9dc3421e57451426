"""`clora user`: people of a tenant (operators, admins) and platform admins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from app.cli import remote as rm
from app.cli.common import attach
from app.cli.remote import remote

ROLES = click.Choice(["operator", "admin", "platform_admin"])


def _in_one_transaction(work: Callable[[Any], str]) -> str:
    """Run ``work(session)`` in one transaction; a refused change is a readable error."""
    from app.core.db import unit_of_work
    from app.core.errors import CloraError

    attach()
    try:
        with unit_of_work() as session:
            return work(session)
    except CloraError as exc:
        raise click.ClickException(exc.message) from exc


def _tenant(session: Any, slug: str) -> Any:
    from app.tenants.repository import TenantRepository

    found = TenantRepository(session).get_by_slug(slug)
    if found is None:
        raise click.ClickException(f"no tenant {slug!r}")
    return found


def _user(session: Any, tenant: Any, email: str) -> Any:
    from app.users.repository import UserRepository

    found = UserRepository(session).get_by_email(email)
    if found is None or found.tenant_id != tenant.id:
        raise click.ClickException(f"no user {email!r} in tenant {tenant.slug!r}")
    return found


@click.group()
def user() -> None:
    """Operators and admins of a tenant, and platform admins."""


@user.command("create")
@click.argument("email")
@click.option("--tenant", "slug", default=None, help="The tenant (not for a platform admin).")
@click.option("--role", type=ROLES, default="operator", show_default=True)
@click.password_option(help="The first password (asked when not given).")
def user_create(email: str, slug: str | None, role: str, password: str) -> None:
    """Create a user: an operator or admin of --tenant, or a platform admin."""
    if (api := remote()) is not None:
        click.echo(rm.user_create(api, email, slug, role, password))
        return
    from app.models.enums import Role
    from app.users.service import create_user

    def work(session: Any) -> str:
        tenant = _tenant(session, slug) if slug else None
        made = create_user(session, email, password, Role(role), tenant.id if tenant else None)
        where = f"in {tenant.slug}" if tenant else "(platform)"
        return f"user {made.email} created as {made.role} {where}"

    click.echo(_in_one_transaction(work))


@user.command("list")
@click.option("--tenant", "slug", required=True)
def user_list(slug: str) -> None:
    """The tenant's users: email, role, and whether they are disabled."""
    if (api := remote()) is not None:
        click.echo(rm.user_list(api, slug))
        return
    from app.users.service import list_users

    def work(session: Any) -> str:
        rows = list_users(session, _tenant(session, slug).id)
        lines = [f"{u.email}\t{u.role}\t{'disabled' if u.disabled_at else 'active'}" for u in rows]
        return "\n".join(lines) or "no users"

    click.echo(_in_one_transaction(work))


def _change(slug: str, email: str, what: str, **change: Any) -> None:
    from app.users.service import update_user

    if (api := remote()) is not None:
        body = {k: v.value if hasattr(v, "value") else v for k, v in change.items()}
        click.echo(rm.user_change(api, slug, email, what, **body))
        return

    def work(session: Any) -> str:
        tenant = _tenant(session, slug)
        target = _user(session, tenant, email)
        update_user(session, tenant.id, None, target.id, **change)
        return f"user {target.email} {what}"

    click.echo(_in_one_transaction(work))


@user.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(["operator", "admin"]))
@click.option("--tenant", "slug", required=True)
def user_set_role(email: str, role: str, slug: str) -> None:
    """Make a user an operator or an admin of their tenant."""
    from app.models.enums import Role

    _change(slug, email, f"is now {role}", role=Role(role))


def _platform_admin(email: str, disabled: bool) -> None:
    """Disable or enable a platform admin (no tenant); never the last enabled one."""
    what = "disabled; their sessions ended" if disabled else "enabled"
    if (api := remote()) is not None:
        click.echo(rm.platform_admin_change(api, email, what, disabled))
        return
    from app.models.enums import Role
    from app.users.repository import UserRepository
    from app.users.service import set_platform_admin_disabled

    def work(session: Any) -> str:
        found = UserRepository(session).get_by_email(email)
        if found is None or found.role != Role.platform_admin:
            raise click.ClickException(f"no platform admin {email!r} (a tenant's user: --tenant)")
        set_platform_admin_disabled(session, None, found.id, disabled)
        return f"platform admin {email} {what}"

    click.echo(_in_one_transaction(work))


@user.command("disable")
@click.argument("email")
@click.option("--tenant", "slug", default=None, help="The user's tenant (none: a platform admin).")
def user_disable(email: str, slug: str | None) -> None:
    """Disable a user; their sessions end at once. Without --tenant, a platform admin (never
    the last enabled one)."""
    if slug is None:
        _platform_admin(email, disabled=True)
        return
    _change(slug, email, "disabled; their sessions ended", disabled=True)


@user.command("enable")
@click.argument("email")
@click.option("--tenant", "slug", default=None, help="The user's tenant (none: a platform admin).")
def user_enable(email: str, slug: str | None) -> None:
    """Enable a disabled user again (without --tenant, a platform admin)."""
    if slug is None:
        _platform_admin(email, disabled=False)
        return
    _change(slug, email, "enabled", disabled=False)


@user.command("reset-password")
@click.argument("email")
@click.option("--tenant", "slug", required=True)
@click.password_option(help="The new password (asked when not given).")
def user_reset_password(email: str, slug: str, password: str) -> None:
    """Set a user's password; their sessions end."""
    if (api := remote()) is not None:
        click.echo(rm.user_reset_password(api, slug, email, password))
        return
    from app.users.service import reset_password

    def work(session: Any) -> str:
        tenant = _tenant(session, slug)
        target = _user(session, tenant, email)
        reset_password(session, tenant.id, target.id, password)
        return f"password of {target.email} reset; their sessions ended"

    click.echo(_in_one_transaction(work))


@user.command("token")
@click.argument("email")
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
def user_token(email: str, name: str) -> None:
    """Mint a personal access token of EMAIL (printed once): `clora --url URL --token TOKEN`
    then acts as that user from anywhere. With --url, only for the token's own user."""
    from app.users import tokens
    from app.users.repository import UserRepository

    if (api := remote()) is not None:
        if api.me()["email"] != email:
            raise click.ClickException("a token is minted by its own user (or on the server)")
        click.echo(api.call("POST", "/api/auth/tokens", body={"name": name})["token"])
        return

    def work(session: Any) -> str:
        found = UserRepository(session).get_by_email(email)
        if found is None:
            raise click.ClickException(f"no user {email!r}")
        return tokens.mint(session, found, name)[1]

    click.echo(_in_one_transaction(work))
