"""The gateway's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from app.core.http_errors import install_error_handlers
from app.health.router import router as health_router
from app.serving.router import router as serving_router


def create_app() -> FastAPI:
    app = FastAPI(title="clora", version="0.1.0")
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(serving_router)
    return app


app = create_app()
