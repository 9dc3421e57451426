"""Queries on users."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User
from app.models.enums import Role


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, user: User) -> User:
        self.session.add(user)
        self.session.flush()
        return user

    def get_by_email(self, email: str) -> User | None:
        return self.session.scalar(select(User).where(User.email == email.lower()))

    def list(self, tenant_id: uuid.UUID) -> list[User]:
        return list(self.session.scalars(select(User).where(User.tenant_id == tenant_id)))

    def any_platform_admin(self) -> bool:
        query = select(User.id).where(User.role == Role.platform_admin).limit(1)
        return self.session.scalar(query) is not None
