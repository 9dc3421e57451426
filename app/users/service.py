"""Users: operators and admins of a tenant, and platform admins."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.core.errors import Conflict, InvalidRequest
from app.core.security import hash_password
from app.models import User
from app.models.enums import Role
from app.users.repository import UserRepository

MIN_PASSWORD_LENGTH = 10


def create_user(
    session: Session, email: str, password: str, role: Role, tenant_id: uuid.UUID | None
) -> User:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InvalidRequest("email is not a valid address", param="email")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"password must have at least {MIN_PASSWORD_LENGTH} characters", param="password"
        )
    if (role == Role.platform_admin) != (tenant_id is None):
        raise InvalidRequest("only platform admins have no tenant", param="role")
    repo = UserRepository(session)
    if repo.get_by_email(email) is not None:
        raise Conflict("a user with this email exists", param="email")
    user = User(email=email, password_hash=hash_password(password), role=role, tenant_id=tenant_id)
    return repo.add(user)
