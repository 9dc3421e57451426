"""The gateway's FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.agents.router import router as agents_router
from app.auth.router import router as auth_router
from app.core.config import get_settings
from app.core.errors import Unauthenticated
from app.core.http_errors import install_error_handlers
from app.core.logging import configure as configure_logging
from app.core.middleware import BodyGuard, RequestContext
from app.cycles.router import router as cycles_router
from app.experiments.router import router as experiments_router
from app.feedback.router import router as feedback_router
from app.files.router import router as files_router
from app.fine_tuning.router import router as fine_tuning_router
from app.health.router import router as health_router
from app.interactions.router import router as interactions_router
from app.serving import metrics
from app.serving.router import router as serving_router
from app.serving.state import GatewayState
from app.tenants.router import router as tenants_router
from app.users.router import platform_router as platform_admins_router
from app.users.router import router as users_router
from app.web import mount_ui


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = GatewayState.create(get_settings())
    app.state.gateway = state
    app.state.loop = asyncio.get_running_loop()
    loops = [
        asyncio.create_task(state.drain_forever()),
        asyncio.create_task(state.retire_forever()),
    ]
    try:
        yield
    finally:
        for task in loops:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await state.pool.close()


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging()
    app = FastAPI(title="clora", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(
        BodyGuard,
        max_bytes=settings.max_request_bytes,
        larger={"/v1/files": settings.max_file_bytes + 65_536},  # the multipart framing
    )
    if settings.cors_origins:
        # Only for a UI served from another origin; the bundled UI is same-origin and needs
        # none. Credentials (the session cookie) are allowed only for the listed origins.
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "x-csrf-token"],
        )
    app.include_router(health_router)
    app.include_router(serving_router)
    app.include_router(feedback_router)
    app.include_router(files_router)
    app.include_router(fine_tuning_router)
    for router in (
        auth_router,
        tenants_router,
        agents_router,
        interactions_router,
        cycles_router,
        experiments_router,
        users_router,
        platform_admins_router,
    ):
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    def prometheus(request: Request) -> Response:
        current = get_settings()
        token = current.metrics_token.get_secret_value() if current.metrics_token else None
        host = request.client.host if request.client else None
        forwarded = any(h in request.headers for h in ("x-forwarded-for", "forwarded"))
        if not metrics.may_scrape(
            host, request.headers.get("authorization", ""), token, forwarded=forwarded
        ):
            raise Unauthenticated(
                "/metrics needs 'Authorization: Bearer <CLORA_METRICS_TOKEN>' "
                "(without a token set, it answers only this host)"
            )
        # Redis down: report the last depth seen.
        with contextlib.suppress(Exception):
            metrics.BUFFER_DEPTH.set(app.state.gateway.buffer.depth())
            metrics.DEAD_LETTERS.set(app.state.gateway.buffer.dead_letters())
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    mount_ui(app)  # frontend/dist at /, when built; after every API route
    app.add_middleware(RequestContext)  # outermost: even a refused body's log lines carry the id
    return app


app = create_app()
