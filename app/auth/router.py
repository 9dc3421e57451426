"""Sign-in, sign-out and who-am-I for the web UI."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.auth import service, sessions
from app.auth.schemas import LoginBody, Me
from app.auth.throttle import LoginThrottle
from app.core.config import get_settings
from app.core.redis import get_redis
from app.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login", response_model=Me)
def login(body: LoginBody, request: Request, session: SessionDep) -> JSONResponse:
    """Sign in; throttled per email and address, and per address (app/auth/throttle.py)."""
    address = request.client.host if request.client else "unknown"
    throttle = LoginThrottle(get_redis())
    user = service.sign_in(session, body.email, body.password, address=address, throttle=throttle)
    settings = get_settings()
    assert settings.secret_key is not None
    token = sessions.issue(settings.secret_key.get_secret_value(), user.id)
    response = JSONResponse(service.whoami(session, user).model_dump())
    secure = settings.environment == "production"
    response.set_cookie(
        sessions.SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=sessions.SESSION_TTL_S,
        path="/",
    )
    response.set_cookie(
        sessions.CSRF_COOKIE,
        sessions.new_csrf_token(),
        httponly=False,
        samesite="strict",
        secure=secure,
        max_age=sessions.SESSION_TTL_S,
        path="/",
    )
    return response


@router.post("/logout")
def logout() -> JSONResponse:
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    response.delete_cookie(sessions.CSRF_COOKIE, path="/")
    return response


@router.get("/me", response_model=Me)
def me(user: CurrentUser, session: SessionDep) -> Me:
    return service.whoami(session, user)
