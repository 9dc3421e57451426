"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import get_sessionmaker
from app.tenants.service import ApiPrincipal, authenticate


def _session() -> Iterator[Session]:
    """One session per request; commit when the handler returns, roll back when it raises."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": commit before the response is sent, so that a client that reads right
# after a write sees it (the default for yield dependencies ends after the response).
SessionDep = Annotated[Session, Depends(_session, scope="function")]


def _tenant(request: Request, session: SessionDep) -> ApiPrincipal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else None
    return authenticate(session, key)


SettingsDep = Annotated[Settings, Depends(get_settings)]
CurrentTenant = Annotated[ApiPrincipal, Depends(_tenant)]
