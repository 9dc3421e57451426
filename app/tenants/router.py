"""Admin API: tenants (platform admins) and API keys (tenant admins)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.deps import AdminActor, PlatformAdmin, SessionDep
from app.tenants import service
from app.tenants.schemas import KeyIn, KeyOut, TenantIn, TenantOut

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/tenants", response_model=list[TenantOut])
def list_tenants(_: PlatformAdmin, session: SessionDep) -> list[TenantOut]:
    return [
        TenantOut.model_validate(t, from_attributes=True) for t in service.list_tenants(session)
    ]


@router.post("/tenants", response_model=TenantOut, status_code=201)
def post_tenant(body: TenantIn, _: PlatformAdmin, session: SessionDep) -> TenantOut:
    return TenantOut.model_validate(
        service.create_tenant(session, body.slug, body.name), from_attributes=True
    )


@router.get("/keys", response_model=list[KeyOut])
def list_keys(actor: AdminActor, session: SessionDep) -> list[KeyOut]:
    keys = service.list_api_keys(session, actor.tenant_id)
    return [KeyOut.model_validate(k, from_attributes=True) for k in keys]


@router.post("/keys", response_model=KeyOut, status_code=201)
def post_key(body: KeyIn, actor: AdminActor, session: SessionDep) -> KeyOut:
    key, plaintext = service.create_api_key(session, actor.tenant_id, body.name)
    out = KeyOut.model_validate(key, from_attributes=True)
    out.key = plaintext
    return out


@router.post("/keys/{key_id}/revoke", status_code=204)
def post_revoke(key_id: uuid.UUID, actor: AdminActor, session: SessionDep) -> None:
    service.revoke_api_key(session, actor.tenant_id, key_id)
