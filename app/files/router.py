"""`/v1/files`: the tenant's fine-tuning files, with its API key (OpenAI's Files API)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.core.config import get_settings
from app.deps import ServingTenant, SessionDep
from app.files import service
from app.files.protocol import FileDeleted, FileList, FileObject

router = APIRouter(prefix="/v1", tags=["files"])


@router.post("/files", response_model=FileObject)
async def upload_file(
    tenant: ServingTenant,
    session: SessionDep,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
) -> FileObject:
    """Upload a JSONL file with ``purpose="fine-tune"``; every line is checked first."""
    content = await file.read()
    row = await run_in_threadpool(
        service.upload,
        session,
        tenant.tenant_id,
        file.filename or "upload.jsonl",
        purpose,
        content,
        max_bytes=get_settings().max_file_bytes,
    )
    return FileObject.of(row)


@router.get("/files", response_model=FileList)
def list_files(
    tenant: ServingTenant,
    session: SessionDep,
    purpose: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    data, more = service.page(
        session, tenant.tenant_id, purpose=purpose, after=after, limit=limit, order=order
    )
    return FileList(
        data=data,
        has_more=more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/files/{file_id}", response_model=FileObject)
def retrieve_file(file_id: str, tenant: ServingTenant, session: SessionDep) -> FileObject:
    return FileObject.of(service.get(session, tenant.tenant_id, file_id))


@router.get("/files/{file_id}/content")
def file_content(file_id: str, tenant: ServingTenant, session: SessionDep) -> Response:
    """The file's bytes as uploaded."""
    row = service.content(session, tenant.tenant_id, file_id)
    return Response(row.content, media_type="application/jsonl")


@router.delete("/files/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, tenant: ServingTenant, session: SessionDep) -> FileDeleted:
    """Delete a file that no unfinished fine-tuning job needs (409 otherwise)."""
    return FileDeleted(id=service.delete(session, tenant.tenant_id, file_id), deleted=True)
