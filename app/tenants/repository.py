"""Queries on tenants and their API keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.repository import TenantScopedRepository
from app.models import ApiKey, Tenant


class TenantRepository:
    """The tenants themselves (not tenant data: these queries span tenants)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, tenant: Tenant) -> Tenant:
        self.session.add(tenant)
        self.session.flush()
        return tenant

    def get(self, tenant_id: uuid.UUID) -> Tenant | None:
        return self.session.get(Tenant, tenant_id)

    def get_by_slug(self, slug: str) -> Tenant | None:
        return self.session.scalar(select(Tenant).where(Tenant.slug == slug))

    def list(self) -> list[Tenant]:
        return list(self.session.scalars(select(Tenant).order_by(Tenant.created_at)))


class ApiKeyRepository(TenantScopedRepository[ApiKey]):
    model = ApiKey

    def get_by_prefix(self, prefix: str) -> ApiKey | None:
        """The one lookup not filtered by tenant: the key is what tells the tenant."""
        return self.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))

    def list(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        """The tenant's keys, oldest first (revoked ones too)."""
        return list(self.session.scalars(self.scoped(tenant_id).order_by(ApiKey.created_at)))

    def revoke(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        result = self.session.execute(
            update(ApiKey)
            .where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
