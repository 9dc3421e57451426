"""First-start data: a platform admin, a demo tenant with one agent and one API key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.agents.schemas import AgentIn
from app.agents.service import create_agent
from app.core.config import Settings
from app.models.enums import Role
from app.tenants.service import create_api_key, create_tenant
from app.users.repository import UserRepository
from app.users.service import create_user

DEMO_TENANT = "demo"
DEMO_AGENT = "calculator"


@dataclass(frozen=True)
class BootstrapResult:
    """What a person must see once: credentials that are never shown again."""

    admin_email: str
    admin_password: str
    tenant_slug: str
    agent_name: str
    api_key: str


def bootstrap_if_empty(session: Session, settings: Settings) -> BootstrapResult | None:
    """Create the first admin and demo tenant when the database has no platform admin."""
    if UserRepository(session).any_platform_admin():
        return None
    password = (
        settings.admin_password.get_secret_value()
        if settings.admin_password
        else secrets.token_urlsafe(12)
    )
    create_user(session, settings.admin_email, password, Role.platform_admin, None)
    tenant = create_tenant(session, DEMO_TENANT, "Demo tenant")
    create_agent(
        session,
        tenant.id,
        AgentIn(name=DEMO_AGENT, description="Calculator tool-use agent", environment="calculator"),
    )
    _, plaintext = create_api_key(session, tenant.id, "demo key")
    return BootstrapResult(settings.admin_email, password, tenant.slug, DEMO_AGENT, plaintext)
