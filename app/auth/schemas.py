"""Sign-in bodies of the web UI."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class LoginBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class Me(BaseModel):
    email: str
    role: str
    tenant: str | None


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    token: str | None = Field(default=None, description="The plaintext: only in the create answer.")

    @classmethod
    def of(cls, row: object, plaintext: str | None = None) -> TokenOut:
        from app.models import PersonalAccessToken

        assert isinstance(row, PersonalAccessToken)
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            token=plaintext,
        )


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(min_length=1, max_length=1000)
    keep_tokens: bool = False
    """Keep the user's personal access tokens (by default a new password revokes them)."""
