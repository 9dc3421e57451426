"""Celery tasks of the adapter registry."""

from __future__ import annotations

import uuid

from app.adapters import service as registry
from app.adapters.repository import AdapterVersionRepository
from app.core.celery_app import get_celery
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.models import Tenant

celery_app = get_celery()


@celery_app.task(
    name="adapter.load",
    acks_late=True,
    autoretry_for=(Exception,),
    max_retries=5,
    retry_backoff=True,  # 1, 2, 4, 8, 16 s, each with jitter: replicas restarting get room
    retry_backoff_max=60,
    retry_jitter=True,
)
def load_task(tenant_id: str, version_id: str) -> str:
    """Load a version into every engine replica (serving also loads on demand)."""
    with unit_of_work() as session:
        version = AdapterVersionRepository(session).get(uuid.UUID(tenant_id), uuid.UUID(version_id))
        if version is None:
            return "gone"
        tenant = session.get(Tenant, version.tenant_id)
        agent = AdapterVersionRepository(session).agent(version.tenant_id, version.agent_id)
        assert tenant is not None and agent is not None
        name = registry.adapter_name(tenant.slug, agent.name, version.number)
        path = version.path
    registry.load_into_engines(get_settings(), name, path)
    return name
