"""Tenants and API keys: creation, authentication and revocation."""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.core import generations, security
from app.core.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from app.models import ApiKey, Tenant
from app.models.tenancy import SLUG_PATTERN
from app.tenants.repository import ApiKeyRepository, TenantRepository

_SLUG = re.compile(SLUG_PATTERN)


def check_slug(value: str, param: str) -> str:
    """A lowercase name safe in URLs, adapter names and folder names."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise InvalidRequest(
            f"{param} must be 1-63 characters of lowercase letters, digits and '-', "
            "starting with a letter or digit",
            param=param,
        )
    return value


def create_tenant(session: Session, slug: str, name: str | None = None) -> Tenant:
    repo = TenantRepository(session)
    check_slug(slug, "slug")
    if repo.get_by_slug(slug) is not None:
        raise Conflict(f"tenant {slug!r} already exists", param="slug")
    return repo.add(Tenant(slug=slug, name=name or slug))


def list_tenants(session: Session) -> list[Tenant]:
    """Every tenant, oldest first (platform admins only)."""
    return TenantRepository(session).list()


def get_tenant(session: Session, tenant_id: uuid.UUID) -> Tenant | None:
    """The tenant with this id, if it exists."""
    return TenantRepository(session).get(tenant_id)


def list_api_keys(session: Session, tenant_id: uuid.UUID) -> list[ApiKey]:
    """The tenant's API keys, oldest first, revoked ones too (never their plaintext)."""
    return ApiKeyRepository(session).list(tenant_id)


def create_api_key(session: Session, tenant_id: uuid.UUID, name: str) -> tuple[ApiKey, str]:
    """Mint a key; the plaintext is returned once and only its hash is kept."""
    minted = security.mint_api_key()
    key = ApiKey(tenant_id=tenant_id, name=name, prefix=minted.prefix, key_hash=minted.key_hash)
    return ApiKeyRepository(session).add(key), minted.plaintext


def revoke_api_key(session: Session, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
    if not ApiKeyRepository(session).revoke(tenant_id, key_id):
        raise NotFound("no such active API key for this tenant", param="key_id")
    _verified.clear()


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling with an API key."""

    tenant_id: uuid.UUID
    tenant_slug: str
    api_key_id: uuid.UUID


# Verified keys, by fingerprint, so the slow hash runs once per key, not per request. An entry
# holds while the serving generation it was verified under is current (any commit that touched
# a key moves it, in every process), for at most _VERIFIED_TTL_S; without a generation (Redis
# unreachable) for _UNSURE_TTL_S.
_VERIFIED_TTL_S = 600.0
_UNSURE_TTL_S = 5.0
_verified: dict[str, tuple[float, int | None, ApiPrincipal]] = {}
generations.bump_on_commit(ApiKey, generations.SERVING)
_lock = threading.Lock()


def known_tenant(plaintext: str | None) -> uuid.UUID | None:
    """The tenant of a key this process verified before, whatever changed since (a key never
    moves to another tenant): lets the gateway count a request against its tenant's rate before
    the key is checked again. None for a key not seen."""
    if not plaintext:
        return None
    with _lock:
        hit = _verified.get(security.fingerprint(plaintext))
    return hit[2].tenant_id if hit is not None else None


def recently_verified(plaintext: str | None, generation: int | None = None) -> ApiPrincipal | None:
    """The principal of a key this process verified under ``generation`` (no key changed
    since), or within the last few seconds when there is no generation to compare; None
    otherwise. Touches no database (the gateway answers most requests from here)."""
    if not plaintext:
        return None
    with _lock:
        hit = _verified.get(security.fingerprint(plaintext))
    if hit is None:
        return None
    verified_at, verified_under, principal = hit
    age = time.monotonic() - verified_at
    if generation is None:
        return principal if age < _UNSURE_TTL_S else None
    return principal if verified_under == generation and age < _VERIFIED_TTL_S else None


def authenticate(
    session: Session, plaintext: str | None, generation: int | None = None
) -> ApiPrincipal:
    """The tenant behind a bearer key; 401 for a missing, unknown, malformed or revoked key."""
    if not plaintext:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    hit = recently_verified(plaintext, generation)
    if hit is not None:
        return hit
    fp = security.fingerprint(plaintext)
    now = time.monotonic()
    prefix = security.split_api_key(plaintext)
    key = ApiKeyRepository(session).get_by_prefix(prefix) if prefix else None
    if key is None or key.revoked_at is not None:
        raise Unauthenticated("invalid or revoked API key")
    if not security.verify_api_key(key.key_hash, plaintext):
        raise Unauthenticated("invalid or revoked API key")
    tenant = TenantRepository(session).get(key.tenant_id)
    assert tenant is not None
    principal = ApiPrincipal(tenant_id=tenant.id, tenant_slug=tenant.slug, api_key_id=key.id)
    with _lock:
        if len(_verified) > 10_000:
            _verified.clear()
        _verified[fp] = (now, generation, principal)
    return principal
