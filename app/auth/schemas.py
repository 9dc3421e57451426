"""Sign-in bodies of the web UI."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LoginBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class Me(BaseModel):
    email: str
    role: str
    tenant: str | None


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(min_length=1, max_length=1000)
