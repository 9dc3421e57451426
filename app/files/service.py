"""Files for fine-tuning: upload (validated line by line), list, read, delete."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from app.core.public_ids import job_public_id
from app.core.redis import get_redis
from app.datasets.service import read_file
from app.files.protocol import FileObject, parse_id
from app.files.repository import FileRepository
from app.models import Tenant, TenantFile
from app.serving.limits import per_hour_window

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
    """Validate the whole file (every line of one format), then keep it, within the tenant's
    quotas (`tenant_file_bytes` kept at once, `tenant_uploads_per_hour`)."""
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
    _within_quota(session, tenant_id, len(content))
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


def _within_quota(session: Session, tenant_id: uuid.UUID, size: int) -> None:
    """Refuse an upload past the tenant's uploads this hour (429, counted in Redis whether or
    not the files are kept) or its stored bytes (413; the tenant's row is locked first, so
    concurrent uploads are summed one after another)."""
    settings = get_settings()
    per_hour_window(
        get_redis(),
        f"clora:uploads:{tenant_id}",
        settings.tenant_uploads_per_hour,
        "uploads (CLORA_TENANT_UPLOADS_PER_HOUR)",
    )
    session.get(Tenant, tenant_id, with_for_update=True)
    stored = FileRepository(session).stored_bytes(tenant_id)
    if stored + size > settings.tenant_file_bytes:
        raise PayloadTooLarge(
            f"the tenant's files would hold {stored + size} bytes, over its quota of "
            f"{settings.tenant_file_bytes} (CLORA_TENANT_FILE_BYTES); delete files it no longer "
            "needs first",
            param="file",
        )


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
