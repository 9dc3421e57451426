"""Signed session cookies and double-submit CSRF tokens for the web UI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid

SESSION_COOKIE = "clora_session"
CSRF_COOKIE = "clora_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 12 * 3600


def _sign(secret: str, message: bytes) -> str:
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(secret: str, user_id: uuid.UUID, epoch: int = 0, now: float | None = None) -> str:
    """``<user>.<epoch>.<expiry>.<nonce>.<hmac>``: tamper-evident, expires, carries no secrets.

    ``epoch`` is the user's session epoch when it was issued; the server ends every session
    of a user by bumping it (sign-out, disabling, a password change)."""
    expiry = int((now or time.time()) + SESSION_TTL_S)
    body = f"{user_id.hex}.{epoch}.{expiry}.{secrets.token_hex(8)}"
    return f"{body}.{_sign(secret, body.encode())}"


def verify(
    secret: str, token: str | None, now: float | None = None
) -> tuple[uuid.UUID, int] | None:
    """The user id and epoch of a valid, unexpired session token, else None (constant-time
    check); the caller compares the epoch with the user's."""
    if not token or token.count(".") != 4 or len(token) > 200:
        return None
    body, _, signature = token.rpartition(".")
    if not hmac.compare_digest(signature, _sign(secret, body.encode())):
        return None
    user_hex, epoch, expiry, _ = body.split(".")
    if not expiry.isdigit() or not epoch.isdigit() or int(expiry) < (now or time.time()):
        return None
    try:
        return uuid.UUID(hex=user_hex), int(epoch)
    except ValueError:
        return None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(cookie: str | None, header: str | None) -> bool:
    return bool(cookie) and bool(header) and hmac.compare_digest(cookie or "", header or "")
