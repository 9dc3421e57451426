"""Generation counters in Redis, bumped after every commit that changed a watched table.

A process that caches what it read from those tables (the gateway's routes) reads the counter
with each use and drops its cache when the counter moved: a promotion committed by any process
(API, Celery worker, CLI) is seen by every gateway replica on its next request, without a
database query per request. Bulk ``UPDATE``/``DELETE`` statements through the ORM count too.
A bump that cannot reach Redis is logged; readers bound their staleness with a TTL as well.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

log = logging.getLogger(__name__)

SERVING = "clora:serving:generation"
"""What the gateway caches is made of: agents, versions and tenants (routes), API keys
(verified keys). Bumped after every commit that changed any of them."""

_WATCHED: dict[type, str] = {}
_PENDING = "clora_generation_bumps"


def bump_on_commit(model: type, key: str) -> None:
    """After a commit that inserted, changed or deleted ``model`` rows, ``INCR key``."""
    _WATCHED[model] = key


def read(client: redis.Redis, key: str) -> int | None:
    """The counter's value (0 before any bump); None when Redis cannot be reached."""
    try:
        value = client.get(key)
    except redis.RedisError:
        return None
    return int(value) if value is not None else 0


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _: UOWTransaction) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        key = _WATCHED.get(type(obj))
        if key is not None:
            session.info.setdefault(_PENDING, set()).add(key)


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_changes(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and state.bind_mapper is not None:
        key = _WATCHED.get(state.bind_mapper.class_)
        if key is not None:
            state.session.info.setdefault(_PENDING, set()).add(key)


@event.listens_for(Session, "after_commit")
def _bump(session: Session) -> None:
    keys = session.info.pop(_PENDING, None)
    if not keys:
        return
    try:
        from app.core.redis import get_redis

        client: Any = get_redis()
        for key in keys:
            client.incr(key)
    except Exception as exc:  # noqa: BLE001 - the commit stands; readers also expire by TTL
        log.warning("could not bump %s after commit (%s)", sorted(keys), type(exc).__name__)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
