"""Admin API: tenants (platform admins) and API keys (tenant admins)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from app.auth.deps import AdminActor, CurrentUser
from app.core.errors import Forbidden
from app.deps import SessionDep
from app.models.enums import Role
from app.tenants.repository import ApiKeyRepository, TenantRepository
from app.tenants.service import create_api_key, create_tenant, revoke_api_key

router = APIRouter(prefix="/api", tags=["admin"])


class TenantIn(BaseModel):
    slug: str = Field(max_length=63)
    name: str | None = Field(default=None, max_length=200)


class TenantOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    created_at: datetime


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    key: str | None = Field(
        default=None, description="The plaintext key: only in the create answer."
    )


def platform_admin(user: CurrentUser) -> None:
    if user.role != Role.platform_admin:
        raise Forbidden("this needs a platform admin")


PlatformAdmin = Annotated[None, Depends(platform_admin)]


@router.get("/tenants", response_model=list[TenantOut])
def list_tenants(_: PlatformAdmin, session: SessionDep) -> list[TenantOut]:
    return [
        TenantOut.model_validate(t, from_attributes=True) for t in TenantRepository(session).list()
    ]


@router.post("/tenants", response_model=TenantOut, status_code=201)
def post_tenant(body: TenantIn, _: PlatformAdmin, session: SessionDep) -> TenantOut:
    return TenantOut.model_validate(
        create_tenant(session, body.slug, body.name), from_attributes=True
    )


@router.get("/keys", response_model=list[KeyOut])
def list_keys(actor: AdminActor, session: SessionDep) -> list[KeyOut]:
    keys = ApiKeyRepository(session).list(actor.tenant_id)
    return [KeyOut.model_validate(k, from_attributes=True) for k in keys]


@router.post("/keys", response_model=KeyOut, status_code=201)
def post_key(body: KeyIn, actor: AdminActor, session: SessionDep) -> KeyOut:
    key, plaintext = create_api_key(session, actor.tenant_id, body.name)
    out = KeyOut.model_validate(key, from_attributes=True)
    out.key = plaintext
    return out


@router.post("/keys/{key_id}/revoke", status_code=204)
def post_revoke(key_id: uuid.UUID, actor: AdminActor, session: SessionDep) -> None:
    revoke_api_key(session, actor.tenant_id, key_id)
