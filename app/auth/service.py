"""Signing in to the web UI: check a user's password, and say who is signed in."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.auth.schemas import Me
from app.auth.throttle import LoginThrottle
from app.core.errors import Unauthenticated
from app.core.security import hash_password, hash_slot, verify_password
from app.models import User
from app.tenants.service import get_tenant
from app.users.repository import UserRepository
from app.users.service import set_password

_DUMMY_HASH = hash_password("not-a-real-password-0000")
"""Checked when the email is unknown, so that the answer's timing does not tell."""


def sign_in(
    session: Session,
    email: str,
    password: str,
    *,
    address: str = "unknown",
    throttle: LoginThrottle | None = None,
) -> User:
    """The enabled user with this email and password; ``Unauthenticated`` for any other.

    With a ``throttle``, an attempt from ``address`` while its door is closed is a 429 before
    any hash is computed, and every failure is counted (app/auth/throttle.py)."""
    if throttle is not None:
        throttle.check(email, address)  # a closed door costs no database read and no hash
    user = UserRepository(session).get_by_email(email.strip())
    with hash_slot():
        if throttle is not None:
            throttle.check(email, address)  # it may have closed while this attempt waited
        valid = verify_password(user.password_hash if user else _DUMMY_HASH, password)
        refused = user is None or not valid or user.disabled_at is not None
        if refused and throttle is not None:
            throttle.failed(email, address)  # counted before the next waiter hashes
    if refused:
        raise Unauthenticated("wrong email or password", param="password")
    if throttle is not None:
        throttle.succeeded(email, address)
    assert user is not None
    return user


def whoami(session: Session, user: User) -> Me:
    """The signed-in user's email, role and tenant slug (none for a platform admin)."""
    tenant = get_tenant(session, user.tenant_id) if user.tenant_id else None
    return Me(email=user.email, role=user.role, tenant=tenant.slug if tenant else None)


def end_sessions(session: Session, user_id: uuid.UUID, epoch: int) -> None:
    """End every session of the user issued at ``epoch`` or before (a stale token does
    nothing: its sessions already ended)."""
    user = session.get(User, user_id)
    if user is not None and user.session_epoch == epoch:
        user.session_epoch += 1
        session.flush()


def change_own_password(
    session: Session, user: User, current: str, new: str, *, keep_tokens: bool = False
) -> None:
    """A signed-in user's new password, given the current one; ends their other sessions and
    revokes their personal access tokens unless ``keep_tokens``."""
    with hash_slot():
        valid = verify_password(user.password_hash, current)
    if not valid:
        raise Unauthenticated("the current password is wrong", param="current_password")
    set_password(session, user, new, keep_tokens=keep_tokens)
