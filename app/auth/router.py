"""Sign-in, sign-out, password change and who-am-I for the web UI."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.auth import service, sessions
from app.auth.schemas import LoginBody, Me, PasswordChange, TokenIn, TokenOut
from app.auth.throttle import LoginThrottle
from app.core.config import get_settings
from app.core.redis import get_redis
from app.deps import CurrentUser, SessionDep
from app.models import User
from app.users import tokens

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _signed_in(body: dict, user: User) -> JSONResponse:
    """A response that carries a fresh session (at the user's current epoch) and CSRF token."""
    settings = get_settings()
    assert settings.secret_key is not None
    token = sessions.issue(settings.secret_key.get_secret_value(), user.id, user.session_epoch)
    response = JSONResponse(body)
    secure = (
        settings.cookie_secure
        if settings.cookie_secure is not None
        else settings.environment == "production"
    )
    for name, value, http_only in (
        (sessions.SESSION_COOKIE, token, True),
        (sessions.CSRF_COOKIE, sessions.new_csrf_token(), False),
    ):
        response.set_cookie(
            name,
            value,
            httponly=http_only,
            samesite="strict",
            secure=secure,
            max_age=sessions.SESSION_TTL_S,
            path="/",
        )
    return response


@router.post("/login", response_model=Me)
def login(body: LoginBody, request: Request, session: SessionDep) -> JSONResponse:
    """Sign in; throttled per email and address, and per address (app/auth/throttle.py)."""
    address = request.client.host if request.client else "unknown"
    throttle = LoginThrottle(get_redis())
    user = service.sign_in(session, body.email, body.password, address=address, throttle=throttle)
    return _signed_in(service.whoami(session, user).model_dump(), user)


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> JSONResponse:
    """Sign out: the cookies go, and the user's sessions end on the server too (a copied
    cookie no longer works). Always succeeds, signed in or not."""
    settings = get_settings()
    assert settings.secret_key is not None
    verified = sessions.verify(
        settings.secret_key.get_secret_value(), request.cookies.get(sessions.SESSION_COOKIE)
    )
    if verified is not None:
        service.end_sessions(session, *verified)
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(sessions.SESSION_COOKIE, path="/")
    response.delete_cookie(sessions.CSRF_COOKIE, path="/")
    return response


@router.post("/password", response_model=Me)
def change_password(body: PasswordChange, user: CurrentUser, session: SessionDep) -> JSONResponse:
    """Change one's own password: every other session of the user ends, and every personal
    access token unless `keep_tokens`; this session goes on with a fresh cookie."""
    service.change_own_password(
        session, user, body.current_password, body.new_password, keep_tokens=body.keep_tokens
    )
    return _signed_in(service.whoami(session, user).model_dump(), user)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(user: CurrentUser, session: SessionDep) -> list[TokenOut]:
    """The user's personal access tokens (never their plaintext)."""
    return [TokenOut.of(t) for t in tokens.list_tokens(session, user.id)]


@router.post("/tokens", response_model=TokenOut, status_code=201)
def create_token(body: TokenIn, user: CurrentUser, session: SessionDep) -> TokenOut:
    """A new personal access token of the user: `clora --url URL --token TOKEN ...` and scripts
    act as the user with it. The plaintext is in this answer only."""
    row, plaintext = tokens.mint(session, user, body.name)
    return TokenOut.of(row, plaintext)


@router.post("/tokens/{token_id}/revoke", response_model=TokenOut)
def revoke_token(token_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TokenOut:
    """Revoke one of the user's own tokens: the next request with it is refused."""
    return TokenOut.of(tokens.revoke(session, user.id, token_id))


@router.get("/me", response_model=Me)
def me(user: CurrentUser, session: SessionDep) -> Me:
    return service.whoami(session, user)
