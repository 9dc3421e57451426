"""The names a page of rows shows: agent names and version numbers, one query each."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.adapters.repository import AdapterVersionRepository


@dataclass(frozen=True)
class Labels:
    """Agent names and adapter version numbers of one tenant, looked up together."""

    names: dict[uuid.UUID, str]
    numbers: dict[uuid.UUID, int]

    @classmethod
    def load(
        cls,
        session: Session,
        tenant_id: uuid.UUID,
        agent_ids: Collection[uuid.UUID],
        version_ids: Collection[uuid.UUID | None],
    ) -> Labels:
        return cls(
            AdapterVersionRepository(session).agent_names(tenant_id, set(agent_ids)),
            AdapterVersionRepository(session).numbers(tenant_id, version_ids),
        )

    def agent(self, agent_id: uuid.UUID) -> str:
        """The agent's name ("?" for one no longer there)."""
        return self.names.get(agent_id, "?")

    def version(self, version_id: uuid.UUID | None) -> int | None:
        return self.numbers.get(version_id) if version_id else None
