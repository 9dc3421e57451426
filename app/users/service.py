"""Users: operators and admins of a tenant, and platform admins.

A tenant admin adds operators and admins, changes their roles, disables them and resets their
passwords; everyone changes their own password. Disabling a user, and any new password, ends
every session of that user on the server (``User.session_epoch``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.core.errors import Conflict, InvalidRequest, NotFound
from app.core.security import hash_password, hash_slot
from app.models import User
from app.models.enums import Role
from app.users.repository import UserRepository

MIN_PASSWORD_LENGTH = 10
TENANT_ROLES = (Role.operator, Role.admin)
"""The roles a tenant admin gives; platform admins are made with `clora user create`."""


def _checked_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"password must have at least {MIN_PASSWORD_LENGTH} characters", param="password"
        )
    with hash_slot():  # 64 MiB per hash: the same bound as sign-in
        return hash_password(password)


def create_user(
    session: Session, email: str, password: str, role: Role, tenant_id: uuid.UUID | None
) -> User:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InvalidRequest("email is not a valid address", param="email")
    if (role == Role.platform_admin) != (tenant_id is None):
        raise InvalidRequest("only platform admins have no tenant", param="role")
    repo = UserRepository(session)
    if repo.get_by_email(email) is not None:
        raise Conflict("a user with this email exists", param="email")
    user = User(
        email=email, password_hash=_checked_password(password), role=role, tenant_id=tenant_id
    )
    return repo.add(user)


def add_tenant_user(
    session: Session, tenant_id: uuid.UUID, email: str, password: str, role: Role
) -> User:
    """An operator or admin of the tenant."""
    if role not in TENANT_ROLES:
        raise InvalidRequest("a tenant's users are operators or admins", param="role")
    return create_user(session, email, password, role, tenant_id)


def list_users(session: Session, tenant_id: uuid.UUID) -> list[User]:
    return UserRepository(session).list(tenant_id)


def set_password(session: Session, user: User, password: str, *, keep_tokens: bool = False) -> None:
    """A new password; every session of the user ends, and (unless ``keep_tokens``) every
    personal access token: a password changed because it leaked must not leave a token the
    thief minted with it."""
    from app.users.tokens import revoke_all

    user.password_hash = _checked_password(password)
    user.session_epoch += 1
    if not keep_tokens:
        revoke_all(session, user.id)
    session.flush()


def update_user(
    session: Session,
    tenant_id: uuid.UUID,
    acting_user_id: uuid.UUID | None,
    user_id: uuid.UUID,
    *,
    role: Role | None = None,
    disabled: bool | None = None,
) -> User:
    """Change a tenant user's role, or disable (ending their sessions) or enable them. No one
    changes their own role or disables themselves: another admin must (``acting_user_id`` is
    None for the CLI, run by whoever holds the machine)."""
    user = UserRepository(session).get_or_404(tenant_id, user_id)
    if user.id == acting_user_id and ((role is not None and role != user.role) or disabled):
        raise Conflict(
            "you cannot change your own role or disable yourself; another admin can",
            param="user_id",
        )
    if role is not None:
        if role not in TENANT_ROLES:
            raise InvalidRequest("a tenant's users are operators or admins", param="role")
        user.role = role
    if disabled is True and user.disabled_at is None:
        user.disabled_at = datetime.now(UTC)
        user.session_epoch += 1
    elif disabled is False:
        user.disabled_at = None
    session.flush()
    return user


def reset_password(
    session: Session, tenant_id: uuid.UUID, user_id: uuid.UUID, password: str
) -> User:
    """An admin sets a tenant user's password; that user's sessions end."""
    user = UserRepository(session).get_or_404(tenant_id, user_id)
    set_password(session, user, password)
    return user


def platform_admins(session: Session) -> Sequence[User]:
    """Every platform admin, disabled ones too."""
    return UserRepository(session).platform_admins()


def set_platform_admin_disabled(
    session: Session, acting_user_id: uuid.UUID | None, user_id: uuid.UUID, disabled: bool
) -> User:
    """Disable a platform admin (their sessions and tokens stop at once) or enable them again.
    Never oneself (another platform admin must; ``acting_user_id`` is None for the CLI on the
    server), and never the last enabled one: the platform would have no one to run it."""
    admins = UserRepository(session).platform_admins(lock=True)
    user = next((u for u in admins if u.id == user_id), None)
    if user is None:
        raise NotFound("no platform admin with this id", param="user_id")
    if disabled and user.id == acting_user_id:
        raise Conflict("you cannot disable yourself; another platform admin can", param="user_id")
    others = [u for u in admins if u.id != user.id and u.disabled_at is None]
    if disabled and user.disabled_at is None and not others:
        raise Conflict(
            "this is the last enabled platform admin; create or enable another first",
            param="user_id",
        )
    if disabled and user.disabled_at is None:
        user.disabled_at = datetime.now(UTC)
        user.session_epoch += 1
    elif not disabled:
        user.disabled_at = None
    session.flush()
    return user
