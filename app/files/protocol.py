"""`/v1/files` bodies, shaped as OpenAI's (`openai.types.FileObject`, `FileDeleted`)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from app.core.public_ids import parse_public
from app.models import TenantFile

FILE_PREFIX = "file-"


def public_id(file_id: uuid.UUID) -> str:
    return f"{FILE_PREFIX}{file_id.hex}"


def parse_id(public: str, param: str = "file_id") -> uuid.UUID:
    """The row id of ``file-<hex>``; anything else names no file of the caller's."""
    return parse_public(public, FILE_PREFIX, "File object", param)


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    status_details: str | None = None
    expires_at: int | None = None
    format: str
    """clora's addition: chat, preference or reinforcement (every line is one)."""
    lines: int
    """clora's addition: how many examples the file holds."""

    @classmethod
    def of(cls, row: TenantFile) -> FileObject:
        return cls(
            id=public_id(row.id),
            bytes=row.size,
            created_at=int(row.created_at.timestamp()),
            filename=row.filename,
            purpose=row.purpose,
            format=row.format,
            lines=row.lines,
        )


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool
