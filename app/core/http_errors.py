"""Every error leaves the API in the OpenAI envelope with the right status."""

from __future__ import annotations

import logging
import math
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import CloraError, Conflict, InvalidRequest

log = logging.getLogger(__name__)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _clora_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CloraError)
    retry = getattr(exc, "retry_after_s", None)
    headers = {"retry-after": str(max(1, math.ceil(retry)))} if retry else None
    return JSONResponse(
        error_body(exc.message, exc.type, exc.param, exc.code),
        status_code=exc.status,
        headers=headers,
    )


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    if first.get("type") == "extra_forbidden":
        # OpenAI's own wording, so a typo reads the same as it would against api.openai.com.
        message = f"Unrecognized request argument supplied: {param}"
        code = "unknown_parameter"
    else:
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else first.get("msg", "")
        code = "invalid_value"
    return JSONResponse(
        error_body(message or "invalid request", "invalid_request_error", param, code),
        status_code=400,
    )


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return JSONResponse(error_body(str(exc.detail), type_), status_code=exc.status_code)


_KEY = re.compile(r"Key \(([^)]*)\)=")
"""The columns of Postgres's detail line: 'Key (tenant_id, name)=(..., bot) already exists.'"""
_SCOPE = frozenset({"tenant_id", "agent_id"})
"""Columns that scope a unique key rather than name the field a client sent."""
_NAMED = {
    "uq_cycle_runs_one_active_per_agent": (
        "the agent already has a cycle queued or running; wait for it to end",
        "agent",
    ),
}
"""Constraints whose columns say too little: the message and the field to name instead."""


def integrity_error(exc: IntegrityError) -> CloraError:
    """The one mapping from a constraint the database enforced to an API error: a unique key
    or a row that a concurrent request removed is a 409 naming the field, a check or a missing
    value is a 400. Every create that races another lands here, whatever its service."""
    orig = exc.orig
    state = getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None) or ""
    if constraint in _NAMED:
        message, field = _NAMED[constraint]
        return Conflict(message, param=field)
    found = _KEY.search(getattr(diag, "message_detail", None) or "")
    columns = [c.strip() for c in found.group(1).split(",")] if found else []
    named = [c for c in columns if c not in _SCOPE] or columns
    param = ", ".join(named) or getattr(diag, "column_name", None) or constraint or "value"
    noun = (getattr(diag, "table_name", None) or "row").removesuffix("s").replace("_", " ")
    if state == "23505":  # unique_violation: another request created it first
        return Conflict(f"another {noun} with this {param} already exists", param=param)
    if state == "23503":  # foreign_key_violation: what it refers to is gone
        return Conflict(f"the {param} this {noun} refers to no longer exists", param=param)
    return InvalidRequest(f"the {noun} was refused: {param} is not valid", param=param)


def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IntegrityError)
    log.info("constraint refused a write: %s", exc.orig)
    return _clora_error(request, integrity_error(exc))


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal error", "server_error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CloraError, _clora_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(Exception, _unexpected)
