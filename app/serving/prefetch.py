"""Start a served request's Redis round trip as the request arrives.

Every request a model answers needs the serving generation (are the cached key and route still
good?) and one more count against its tenant's rate, one Redis round trip
(`GatewayState.generation_and_count`). Started here, before the body is read, parsed and
validated, the round trip overlaps with that work instead of following it; the dependency that
authenticates the request (`app.deps.served_principal`) awaits the result.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from app.tenants.service import known_tenant

SERVED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses"})
"""The endpoints whose requests a model answers (counted against the tenant's rate)."""

PREFETCH = "serving_prefetch"
"""Where in ``request.state`` the round trip's task waits."""


def bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class ServingPrefetch:
    """For a POST to a served path, start the generation read and rate count as a task."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in SERVED_PATHS
            and hasattr(scope["app"].state, "gateway")
        ):
            state = scope["app"].state.gateway
            task = asyncio.ensure_future(state.generation_and_count(known_tenant(bearer(scope))))
            scope.setdefault("state", {})[PREFETCH] = task
            try:
                await self.app(scope, receive, send)
            finally:
                # Refused before the dependency awaited it (a body too large, say): the count
                # stands, as it would have without the prefetch once the key was checked.
                await task
            return
        await self.app(scope, receive, send)
