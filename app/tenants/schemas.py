"""Tenant and API-key bodies of the admin API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class TenantIn(BaseModel):
    slug: str = Field(max_length=63)
    name: str | None = Field(default=None, max_length=200)


class TenantOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    created_at: datetime


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    key: str | None = Field(
        default=None, description="The plaintext key: only in the create answer."
    )
