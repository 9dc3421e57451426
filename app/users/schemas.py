"""User management bodies and views."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from app.models.enums import Role


class UserCreate(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)
    role: Role = Role.operator


class UserUpdate(BaseModel):
    role: Role | None = None
    disabled: bool | None = None


class PasswordReset(BaseModel):
    password: str = Field(min_length=1, max_length=1000)


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    role: Role
    disabled: bool
    created_at: datetime

    @classmethod
    def of(cls, user: object) -> UserOut:
        from app.models import User

        assert isinstance(user, User)
        return cls(
            id=user.id,
            email=user.email,
            role=user.role,
            disabled=user.disabled_at is not None,
            created_at=user.created_at,
        )


class PlatformAdminUpdate(BaseModel):
    disabled: bool
