"""Personal access tokens: a user's own bearer tokens for `/api`, so that `clora --url URL
--token TOKEN ...` and scripts administer a deployed stack without a browser session.

A token acts as its user, with the user's role and tenant, for as long as the user is enabled
and the token is not revoked. It is 32 random bytes, so a fast hash (SHA-256) makes a stolen
hash useless; only the hash and a visible prefix are kept, and the plaintext is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import NotFound
from app.models import PersonalAccessToken, User

SCHEME = "clorapat"


def is_token(plaintext: str | None) -> bool:
    """Whether a bearer credential is shaped like a personal access token (not an API key)."""
    return bool(plaintext) and plaintext.startswith(f"{SCHEME}_")  # type: ignore[union-attr]


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _prefix(plaintext: str) -> str | None:
    parts = plaintext.split("_", 2)  # the secret part may hold "_" itself
    if len(parts) != 3 or parts[0] != SCHEME or len(parts[1]) != 12 or len(plaintext) > 200:
        return None
    return f"{parts[0]}_{parts[1]}"


def mint(session: Session, user: User, name: str) -> tuple[PersonalAccessToken, str]:
    """A new token of ``user``; the plaintext is returned once and only its hash is kept."""
    prefix = f"{SCHEME}_{secrets.token_hex(6)}"
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    row = PersonalAccessToken(
        user_id=user.id, name=name, prefix=prefix, token_hash=_hash(plaintext)
    )
    session.add(row)
    session.flush()
    return row, plaintext


def list_tokens(session: Session, user_id: uuid.UUID) -> list[PersonalAccessToken]:
    """The user's tokens, newest first (revoked ones included, marked)."""
    return list(
        session.scalars(
            select(PersonalAccessToken)
            .where(PersonalAccessToken.user_id == user_id)
            .order_by(PersonalAccessToken.created_at.desc())
        )
    )


def revoke(session: Session, user_id: uuid.UUID, token_id: uuid.UUID) -> PersonalAccessToken:
    """Revoke one of the user's own tokens (at once: the next request with it is refused)."""
    row = session.get(PersonalAccessToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound("no such personal access token of yours", param="token_id")
    row.revoked_at = row.revoked_at or datetime.now(UTC)
    session.flush()
    return row


def revoke_all(session: Session, user_id: uuid.UUID) -> int:
    """Revoke every live token of the user (a new password); returns how many."""
    now = datetime.now(UTC)
    rows = [t for t in list_tokens(session, user_id) if t.revoked_at is None]
    for row in rows:
        row.revoked_at = now
    session.flush()
    return len(rows)


def authenticate(session: Session, plaintext: str) -> User | None:
    """The enabled user a valid, unrevoked token belongs to; records when it was last used."""
    prefix = _prefix(plaintext)
    if prefix is None:
        return None
    row = session.scalar(select(PersonalAccessToken).where(PersonalAccessToken.prefix == prefix))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, _hash(plaintext)):
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    row.last_used_at = datetime.now(UTC)
    return user
