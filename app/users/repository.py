"""Queries on users (a user is tenant-scoped, except a platform admin)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import NotFound
from app.models import User
from app.models.enums import Role


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, user: User) -> User:
        self.session.add(user)
        self.session.flush()
        return user

    def get_or_404(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User:
        """The tenant's user with this id; 404 also for another tenant's or a platform admin."""
        user = self.session.scalar(
            select(User).where(User.tenant_id == tenant_id, User.id == user_id)
        )
        if user is None:
            raise NotFound("no such user", param="user_id")
        return user

    def get_by_email(self, email: str) -> User | None:
        return self.session.scalar(select(User).where(User.email == email.strip().lower()))

    def list(self, tenant_id: uuid.UUID) -> list[User]:
        query = select(User).where(User.tenant_id == tenant_id).order_by(User.email)
        return list(self.session.scalars(query))

    def platform_admins(self, *, lock: bool = False) -> Sequence[User]:
        """Every platform admin in id order; with ``lock``, row-locked: two admins disabling
        each other at once take turns, so the second sees the first's change."""
        query = select(User).where(User.role == Role.platform_admin).order_by(User.id)
        return self.session.scalars(query.with_for_update() if lock else query).all()

    def any_platform_admin(self) -> bool:
        query = select(User.id).where(User.role == Role.platform_admin).limit(1)
        return self.session.scalar(query) is not None
