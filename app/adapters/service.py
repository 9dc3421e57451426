"""The adapter registry: publish immutable versions, promote, roll back, resolve model names."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.adapters import storage
from app.adapters.repository import AdapterVersionRepository
from app.core import generations
from app.core.config import Settings
from app.core.errors import Conflict, NotFound
from app.models import AdapterVersion, Agent, Tenant
from app.models.enums import AdapterStatus

# What a route is made of: gateways cache routes and drop them when this moves.
for _model in (Agent, AdapterVersion, Tenant):
    generations.bump_on_commit(_model, generations.SERVING)

_PINNED = re.compile(r"^(?P<agent>[a-z0-9][a-z0-9-]{0,62})(?:@v(?P<number>[1-9][0-9]{0,8}))?$")


def adapter_name(tenant_slug: str, agent_name: str, number: int) -> str:
    """The engine-side name of a version: ``<tenant-slug>/<agent>@v<N>``."""
    return f"{tenant_slug}/{agent_name}@v{number}"


@dataclass(frozen=True)
class Route:
    """Where a request for a model name goes: plain values, safe to cache across sessions."""

    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    agent_name: str
    version_id: uuid.UUID | None  # None: no version yet, served by the identity adapter
    version_number: int | None
    engine_name: str | None
    path: str | None
    default_max_tokens: int | None = None
    """The agent's cap on a completion when the request sets none."""

    @property
    def version_label(self) -> str:
        return self.engine_name or f"{self.agent_name}@base"


def _model_not_found(model: str) -> NotFound:
    err = NotFound(
        f"The model '{model}' does not exist or you do not have access to it.", param="model"
    )
    err.code = "model_not_found"
    return err


def resolve(session: Session, tenant_id: uuid.UUID, tenant_slug: str, model: str) -> Route:
    """Map ``agent`` (its live version) or ``agent@vN`` (pinned) to a route within the tenant."""
    match = _PINNED.match(model or "")
    if not match:
        raise _model_not_found(model)
    agent = AdapterVersionRepository(session).agent_named(tenant_id, match["agent"])
    if agent is None:
        raise _model_not_found(model)
    repo = AdapterVersionRepository(session)
    if match["number"]:
        version = repo.get_by_number(tenant_id, agent.id, int(match["number"]))
        if version is None:
            raise _model_not_found(model)
    elif agent.live_version_id is not None:
        version = repo.get(tenant_id, agent.live_version_id)
    else:
        version = None
    cap = (agent.settings or {}).get("default_max_tokens")
    if version is None:
        return Route(tenant_id, agent.id, agent.name, None, None, None, None, cap)
    name = adapter_name(tenant_slug, agent.name, version.number)
    return Route(
        tenant_id, agent.id, agent.name, version.id, version.number, name, version.path, cap
    )


def publish(
    session: Session,
    settings: Settings,
    tenant: Tenant,
    agent_id: uuid.UUID,
    write: Callable[[Path], None],
    *,
    parent_id: uuid.UUID | None = None,
    source: str = "manual",
    metrics: dict[str, Any] | None = None,
) -> AdapterVersion:
    """Write a new immutable version folder and record it as a candidate.

    The caller loads it into the engines after commit (or promotes it)."""
    repo = AdapterVersionRepository(session)
    agent = repo.lock_agent(tenant.id, agent_id)
    if agent is None:
        raise NotFound("no such agent", param="agent")
    number = repo.next_number(tenant.id, agent.id)
    relative = Path(tenant.slug) / agent.name / f"v{number}"
    folder, digest = storage.write_version_folder(
        settings.adapter_dir.resolve(), relative, write, settings.engine_max_lora_rank
    )
    version = AdapterVersion(
        tenant_id=tenant.id,
        agent_id=agent.id,
        number=number,
        path=str(folder),
        checksum=digest,
        parent_id=parent_id,
        status=AdapterStatus.candidate,
        source=source,
        metrics=metrics or {},
    )
    return repo.add(version)


def promote(
    session: Session,
    tenant_id: uuid.UUID,
    version_id: uuid.UUID,
    *,
    force: bool | None = None,
    by: str | None = None,
    action: str = "promote",
) -> AdapterVersion:
    """Make a version the agent's live one; the previous live version is retired.

    With ``force`` given (an admin's promotion or rollback), a version whose gate verdict is
    not "passed" (rejected, or nothing to evaluate on) goes live only when ``force`` is true,
    and the force is recorded on the version (with the ``action``). ``force=None`` (a cycle
    whose candidate passed) skips the check."""
    repo = AdapterVersionRepository(session)
    version = repo.get(tenant_id, version_id)
    if version is None:
        raise NotFound("no such adapter version", param="version")
    verdict = ((version.metrics or {}).get("gate") or {}).get("verdict")
    if force is not None and verdict not in (None, "passed"):
        if not force:
            reason = (version.metrics or {}).get("gate", {}).get("reason", "")
            raise Conflict(
                f"version {version.number} did not pass the promotion gate ({verdict}: "
                f"{reason}); {action} with force to override",
                param="force",
            )
        version.metrics = {
            **(version.metrics or {}),
            "forced": {
                "by": by,
                "at": datetime.now(UTC).isoformat(),
                "verdict": verdict,
                "action": action,
            },
        }
    agent = repo.lock_agent(tenant_id, version.agent_id)
    assert agent is not None
    if agent.live_version_id == version.id:
        return version
    if agent.live_version_id is not None:
        previous = repo.get(tenant_id, agent.live_version_id)
        if previous is not None:
            previous.status = AdapterStatus.retired
    version.status = AdapterStatus.live
    agent.live_version_id = version.id
    session.flush()
    return version


def rollback(
    session: Session,
    tenant_id: uuid.UUID,
    agent_id: uuid.UUID,
    to_number: int | None = None,
    *,
    force: bool = False,
    by: str | None = None,
) -> AdapterVersion:
    """Make an earlier version live again: the given one, or the previous live one. A
    version that never passed the gate (refused, needs evaluation, or once forced live)
    goes through the gate like a promotion: only with ``force``, and the force is recorded."""
    repo = AdapterVersionRepository(session)
    agent = repo.lock_agent(tenant_id, agent_id)
    if agent is None:
        raise NotFound("no such agent", param="agent")
    if to_number is not None:
        target = repo.get_by_number(tenant_id, agent_id, to_number)
    else:
        live = repo.get(tenant_id, agent.live_version_id) if agent.live_version_id else None
        earlier = [
            v
            for v in repo.list(tenant_id, agent_id)
            if live is not None and v.number < live.number and v.status == AdapterStatus.retired
        ]
        target = earlier[-1] if earlier else None
    if target is None:
        raise Conflict("there is no earlier version to roll back to", param="version")
    return promote(session, tenant_id, target.id, force=force, by=by, action="roll back")


def verify(version: AdapterVersion) -> bool:
    """Whether the version's files still match the checksum recorded at publish."""
    try:
        return storage.checksum(Path(version.path)) == version.checksum
    except FileNotFoundError:
        return False


def engine_urls(settings: Settings) -> list[str]:
    return settings.engine_urls or [f"http://127.0.0.1:{settings.engine_port}"]


def load_into_engines(settings: Settings, name: str, path: str, timeout_s: float = 60.0) -> None:
    """Load a version into every engine replica (after the publishing transaction commits)."""
    import httpx

    from app.core.errors import EngineUnavailable

    for url in engine_urls(settings):
        try:
            resp = httpx.post(
                f"{url.rstrip('/')}/v1/load_lora_adapter",
                json={"lora_name": name, "lora_path": path},
                timeout=timeout_s,
            )
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"engine {url} unreachable: {exc}") from exc
        if resp.status_code != 200 and not (resp.status_code == 400 and "already" in resp.text):
            raise EngineUnavailable(f"engine {url} refused {name}: {resp.text[:500]}")
