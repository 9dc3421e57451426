"""The model ids a tenant's key can serve: each agent (live version) and ``agent@vN``."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.adapters.service import adapter_name
from app.agents.service import list_with_versions
from app.core.errors import NotFound
from app.serving.protocol import ModelCard
from app.tenants.service import ApiPrincipal


def model_cards(session: Session, tenant: ApiPrincipal) -> list[ModelCard]:
    """Every model id of the tenant, in the order ``/v1/models`` lists them."""
    cards: list[ModelCard] = []
    for agent, listed in list_with_versions(session, tenant.tenant_id):
        live = next((v for v in listed if v.id == agent.live_version_id), None)
        live_name = adapter_name(tenant.tenant_slug, agent.name, live.number) if live else None
        cards.append(
            ModelCard(
                id=agent.name,
                created=int(agent.created_at.timestamp()),
                owned_by=tenant.tenant_slug,
                live_version=live_name,
            )
        )
        cards.extend(
            ModelCard(
                id=f"{agent.name}@v{v.number}",
                created=int(v.created_at.timestamp()),
                owned_by=tenant.tenant_slug,
            )
            for v in listed
        )
    return cards


def model_card(session: Session, tenant: ApiPrincipal, model_id: str) -> ModelCard:
    """One of the tenant's model ids; anything else (another tenant's too) is not found."""
    card = next((c for c in model_cards(session, tenant) if c.id == model_id), None)
    if card is None:
        err = NotFound(
            f"The model '{model_id}' does not exist or you do not have access to it.",
            param="model",
        )
        err.code = "model_not_found"
        raise err
    return card
