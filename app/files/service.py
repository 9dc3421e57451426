"""Files for fine-tuning: upload (validated line by line), list, read, delete."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from app.core.public_ids import job_public_id
from app.datasets.service import read_file
from app.files.protocol import FileObject, parse_id
from app.files.repository import FileRepository
from app.models import TenantFile

PURPOSES = ("fine-tune",)
"""The purposes a file may be uploaded for (what the platform can use it for)."""
MAX_FILENAME = 255


class InvalidFile(InvalidRequest):
    code = "invalid_file_format"


def upload(
    session: Session,
    tenant_id: uuid.UUID,
    filename: str,
    purpose: str,
    content: bytes,
    *,
    max_bytes: int,
) -> TenantFile:
    """Validate the whole file (every line of one format), then keep it."""
    if purpose not in PURPOSES:
        raise InvalidRequest(
            f"purpose '{purpose}' is not supported here; use one of {list(PURPOSES)}",
            param="purpose",
        )
    if len(content) > max_bytes:
        raise PayloadTooLarge(f"the file exceeds {max_bytes} bytes", param="file")
    name = (filename or "upload.jsonl").replace("\x00", "")[:MAX_FILENAME]
    try:
        fmt, payloads = read_file(content)
    except InvalidRequest as exc:
        raise InvalidFile(f"Invalid file format: {exc.message}", param="file") from exc
    row = TenantFile(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        filename=name,
        purpose=purpose,
        size=len(content),
        format=fmt,
        lines=len(payloads),
        content=content,
    )
    return FileRepository(session).add(row)


def get(
    session: Session, tenant_id: uuid.UUID, public_id: str, param: str = "file_id"
) -> TenantFile:
    """The tenant's file by its ``file-…`` id; 404 for another tenant's or none."""
    row = FileRepository(session).get(tenant_id, parse_id(public_id, param))
    if row is None:
        raise NotFound(f"No such File object: {public_id}", param=param)
    return row


def payloads(
    session: Session, tenant_id: uuid.UUID, file_id: uuid.UUID
) -> tuple[str, list[dict[str, Any]]]:
    """(format, examples) of one of the tenant's files, read again from its bytes."""
    row = FileRepository(session).content(tenant_id, file_id)
    if row is None:
        raise NotFound("the file was deleted", param="training_file")
    return read_file(row.content)


def content(session: Session, tenant_id: uuid.UUID, public_id: str) -> TenantFile:
    row = FileRepository(session).content(tenant_id, parse_id(public_id))
    if row is None:
        raise NotFound(f"No such File object: {public_id}", param="file_id")
    return row


def page(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    purpose: str | None,
    after: str | None,
    limit: int,
    order: str,
) -> tuple[list[FileObject], bool]:
    where = [TenantFile.purpose == purpose] if purpose else []
    rows, more = FileRepository(session).cursor_page(
        tenant_id,
        where=where,
        after=parse_id(after, "after") if after else None,
        limit=limit,
        descending=order == "desc",
    )
    return [FileObject.of(r) for r in rows], more


def delete(session: Session, tenant_id: uuid.UUID, public_id: str) -> str:
    """Delete a file no unfinished job needs; returns its id."""
    repo = FileRepository(session)
    row = get(session, tenant_id, public_id)
    session.refresh(row, with_for_update=True)  # a job being created on it goes first
    busy = repo.active_jobs_using(tenant_id, row.id)
    if busy:
        raise Conflict(
            f"the file is used by fine-tuning job {job_public_id(busy[0].id)}, which has not "
            "finished; cancel it or wait for it first",
            param="file_id",
        )
    session.delete(row)
    session.flush()
    return public_id
