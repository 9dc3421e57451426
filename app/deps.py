"""Every request dependency, as Annotated aliases: the session, settings, the API-key tenant
(`ServingTenant`) and the signed-in user acting within a tenant (`CurrentActor`, `AdminActor`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.auth import sessions
from app.core.config import get_settings
from app.core.db import get_sessionmaker
from app.core.errors import Forbidden, NotFound, Unauthenticated
from app.core.redis import get_redis
from app.models import User
from app.models.enums import Role
from app.serving.limits import check_writes
from app.serving.state import GatewayState
from app.tenants.repository import TenantRepository
from app.tenants.service import ApiPrincipal, known_tenant, recently_verified
from app.users import tokens


def _session() -> Iterator[Session]:
    """One session per request; commit when the handler returns, roll back when it raises."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": commit before the response is sent, so that a client that reads right
# after a write sees it (the default for yield dependencies ends after the response).
SessionDep = Annotated[Session, Depends(_session, scope="function")]


def gateway_state(request: Request) -> GatewayState:
    return request.app.state.gateway


def bearer_key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def serving_principal(request: Request) -> ApiPrincipal:
    """Authenticate with the API key; keeps working from cache while Postgres is down. A key
    verified under the current serving generation is answered on the event loop, without a
    thread hop or a hash; the generation is kept for the route lookup too."""
    state = gateway_state(request)
    key = bearer_key(request)
    return await _principal(state, key, state.generation(), request)


async def served_principal(request: Request) -> ApiPrincipal:
    """`serving_principal` for the requests a model answers, counted against the tenant's
    rate (429 past it): for a key this process has seen, the count rides in the same Redis
    round trip as the generation read."""
    state = gateway_state(request)
    key = bearer_key(request)
    guess = known_tenant(key)
    generation, count = state.generation_and_count(guess)
    principal = await _principal(state, key, generation, request)
    state.limits.check_rate(principal.tenant_id, count if principal.tenant_id == guess else None)
    return principal


async def _principal(
    state: GatewayState, key: str | None, generation: int | None, request: Request
) -> ApiPrincipal:
    request.state.serving_generation = generation
    principal = recently_verified(key, generation)
    if principal is None:
        principal = await run_in_threadpool(state.authenticate, key, generation)
    return principal


ServingTenant = Annotated[ApiPrincipal, Depends(serving_principal)]
"""The tenant an API key selects (the OpenAI surface and feedback)."""
ServedTenant = Annotated[ApiPrincipal, Depends(served_principal)]
"""`ServingTenant` for the requests a model answers: counted against the tenant's rate."""


SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Actor:
    """A signed-in user acting within one tenant."""

    user_id: uuid.UUID
    email: str
    role: Role
    tenant_id: uuid.UUID
    tenant_slug: str

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.admin, Role.platform_admin)


def current_user(request: Request, session: SessionDep) -> User:
    """The signed-in user (`_signed_in`). Every write counts against the user's own budget
    too (`tenant_write_limit_per_minute`), so the calls no tenant scopes (a token, a password,
    a tenant of a platform admin's) are limited as well."""
    user = _signed_in(request, session)
    if request.method not in SAFE_METHODS:
        check_writes(get_redis(), user.id, get_settings().tenant_write_limit_per_minute)
    return user


def _signed_in(request: Request, session: Session) -> User:
    """The signed-in user: a personal access token (``Authorization: Bearer clorapat_...``,
    no CSRF: it is not a cookie), else the session cookie (writes need the CSRF header)."""
    bearer = bearer_key(request)
    if tokens.is_token(bearer):
        by_token = tokens.authenticate(session, bearer)  # type: ignore[arg-type]
        if by_token is None:
            raise Unauthenticated(
                "unknown or revoked personal access token, or its user is disabled"
            )
        return by_token
    if bearer and sessions.SESSION_COOKIE not in request.cookies:
        raise Unauthenticated(
            "/api takes a personal access token (Bearer clorapat_...) or a signed-in session; "
            "API keys (clora_...) are for /v1"
        )
    secret = get_settings().secret_key
    assert secret is not None
    verified = sessions.verify(
        secret.get_secret_value(), request.cookies.get(sessions.SESSION_COOKIE)
    )
    user = session.get(User, verified[0]) if verified else None
    if verified is None or user is None or user.disabled_at is not None:
        raise Unauthenticated("sign in first")
    if verified[1] != user.session_epoch:
        raise Unauthenticated("this session was ended (signed out, disabled or new password)")
    if request.method not in SAFE_METHODS and not sessions.csrf_ok(
        request.cookies.get(sessions.CSRF_COOKIE), request.headers.get(sessions.CSRF_HEADER)
    ):
        raise Forbidden("missing or wrong CSRF token", param=sessions.CSRF_HEADER)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def platform_admin(user: CurrentUser) -> User:
    if user.role != Role.platform_admin:
        raise Forbidden("this needs a platform admin")
    return user


PlatformAdmin = Annotated[User, Depends(platform_admin)]


def current_actor(request: Request, user: CurrentUser, session: SessionDep) -> Actor:
    """The user's own tenant; a platform admin names one with ``?tenant=<slug>``."""
    repo = TenantRepository(session)
    if user.role == Role.platform_admin:
        slug = request.query_params.get("tenant") or request.headers.get("x-clora-tenant")
        tenant = repo.get_by_slug(slug) if slug else None
        if tenant is None:
            raise NotFound("name a tenant with ?tenant=<slug>", param="tenant")
    else:
        assert user.tenant_id is not None
        tenant = repo.get(user.tenant_id)
        assert tenant is not None
    if request.method not in SAFE_METHODS:
        check_writes(get_redis(), tenant.id, get_settings().tenant_write_limit_per_minute)
    return Actor(user.id, user.email, user.role, tenant.id, tenant.slug)


def admin_actor(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
    if not actor.is_admin:
        raise Forbidden("this needs an admin")
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]
AdminActor = Annotated[Actor, Depends(admin_actor)]
