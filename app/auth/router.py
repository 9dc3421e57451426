"""Sign-in, sign-out and who-am-I for the web UI."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.auth import sessions
from app.auth.deps import CurrentUser
from app.core.config import get_settings
from app.core.errors import Unauthenticated
from app.core.security import verify_password
from app.deps import SessionDep
from app.tenants.repository import TenantRepository
from app.users.repository import UserRepository

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class Me(BaseModel):
    email: str
    role: str
    tenant: str | None


def _me(session: SessionDep, user: object) -> Me:
    tenant_id = getattr(user, "tenant_id", None)
    tenant = TenantRepository(session).get(tenant_id) if tenant_id else None
    return Me(email=user.email, role=user.role, tenant=tenant.slug if tenant else None)  # type: ignore[attr-defined]


@router.post("/login", response_model=Me)
async def login(body: LoginBody, session: SessionDep) -> JSONResponse:
    user = UserRepository(session).get_by_email(body.email.strip())
    # Verify against a dummy hash when the user is unknown, so timing does not tell.
    valid = await run_in_threadpool(
        verify_password, user.password_hash if user else _DUMMY_HASH, body.password
    )
    if user is None or not valid or user.disabled_at is not None:
        raise Unauthenticated("wrong email or password", param="password")
    settings = get_settings()
    assert settings.secret_key is not None
    token = sessions.issue(settings.secret_key.get_secret_value(), user.id)
    response = JSONResponse(_me(session, user).model_dump())
    secure = settings.environment == "production"
    response.set_cookie(sessions.SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=secure, max_age=sessions.SESSION_TTL_S, path="/")  # fmt: skip
    response.set_cookie(sessions.CSRF_COOKIE, sessions.new_csrf_token(), httponly=False,
                        samesite="strict", secure=secure, max_age=sessions.SESSION_TTL_S, path="/")  # fmt: skip
    return response


@router.post("/logout")
def logout() -> JSONResponse:
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    response.delete_cookie(sessions.CSRF_COOKIE, path="/")
    return response


@router.get("/me", response_model=Me)
def me(user: CurrentUser, session: SessionDep) -> Me:
    return _me(session, user)


from app.core.security import hash_password  # noqa: E402

_DUMMY_HASH = hash_password("not-a-real-password-0000")
