"""ASGI middleware: request ids on every log line, request body size limit."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestContext:
    """Bind a request id to every log line the request writes, and return it as
    ``x-request-id`` (the caller's own id when it sent a well-formed one). Being outermost, it
    also stamps when the request arrived (``request.state.arrived``, ``perf_counter``): the
    gateway's overhead header counts from there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["arrived"] = time.perf_counter()
        from app.core.logging import bound

        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)


_NUL = re.compile(rb"(?:^|[^\\])(?:\\\\)*\\u0000|\x00")
"""A NUL character in a request body: raw, or as JSON's escape (an escaped backslash followed
by "u0000" is text, not a NUL). PostgreSQL text and jsonb cannot store it."""


_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")
"""JSON's escape of a UTF-16 surrogate, which may stand alone in valid JSON."""


def _unstorable(value: object) -> bool:
    """Whether a parsed JSON value holds text UTF-8 cannot encode (a lone surrogate)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


def has_lone_surrogate(body: bytes) -> bool:
    """A JSON body with a surrogate escape not in a pair ("hi \\ud800 there" is valid JSON;
    neither Postgres nor the JSON encoder can store the text it stands for). Bodies without a
    surrogate escape are not parsed."""
    if not _SURROGATE_HINT.search(body):
        return False
    try:
        return _unstorable(json.loads(body))
    except ValueError:  # not JSON: the handler answers it
        return False


class BodyGuard:
    """Refuse bodies over ``max_bytes`` with 413 (by header, or while reading a chunked body),
    and bodies with a NUL character or a lone surrogate with 400, before any handler sees
    them: either would pass validation and then fail at the database (or the log's encoder),
    after the client had been answered."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}
        """Path prefixes allowed a larger body (file uploads), with their limits."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = next((n for p, n in self.larger.items() if path.startswith(p)), self.max_bytes)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(send, limit)
            return
        # The whole body is read here (it is bounded by max_bytes) and handed on in one
        # message: an exception raised from inside the app's own read would be turned into a
        # generic "error parsing the body" by FastAPI.
        chunks: list[bytes] = []
        seen = 0
        first: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # the client went away before its body was complete
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await self._too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if first is None and _NUL.search(body):
            await _refuse(
                send,
                400,
                "text may not contain NUL characters (\\u0000): remove them and send it again",
                "invalid_characters",
            )
            return
        if first is None and has_lone_surrogate(body):
            await _refuse(
                send,
                400,
                "text may not contain unpaired UTF-16 surrogates (a \\ud800-\\udfff escape "
                "without its pair): send the character itself, or a valid pair",
                "invalid_characters",
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                if first is not None:
                    return first
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, limit: int) -> None:
        await _refuse(send, 413, f"request body exceeds {limit} bytes", "request_too_large")


async def _refuse(send: Send, status: int, message: str, code: str) -> None:
    body: dict[str, Any] = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": code,
        }
    }
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})
