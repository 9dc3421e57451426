"""Serve the built web UI (`frontend/dist`) from the gateway at `/`.

Client-side routes (`/review/...`, `/admin/...`) get `index.html`; the API's prefixes never
match here, so an unknown `/api/...` or `/v1/...` path keeps the API's own 404 or 405.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from app.core.config import REPO_ROOT

DEFAULT_DIST = REPO_ROOT / "frontend" / "dist"
# Paths the UI must never answer, whatever routes are added after it.
RESERVED = ("api", "v1", "healthz", "readyz", "metrics", "docs", "redoc", "openapi.json")
IMMUTABLE = "public, max-age=31536000, immutable"
# The bundle has no inline script; React sets styles through the CSSOM, which CSP allows.
UI_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class UIPathConvertor(Convertor[str]):
    """Any path except those under a reserved prefix (the match fails, so the route is skipped)."""

    regex = "(?!(?:" + "|".join(p.replace(".", r"\.") for p in RESERVED) + ")(?:/|$)).*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("clora_ui_path", UIPathConvertor())


def _static_file(root: Path, path: str) -> Path | None:
    """The file under ``root`` that ``path`` names, or None (also for any path escaping root)."""
    if not path:
        return None
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def mount_ui(app: FastAPI, dist_dir: Path = DEFAULT_DIST) -> None:
    """Serve ``dist_dir`` at ``/`` with an ``index.html`` fallback; nothing when it is not built.

    Call it after the API routers: the UI route is a catch-all over the remaining paths."""
    root = dist_dir.resolve()
    index = root / "index.html"
    if not index.is_file() or getattr(app.state, "ui_dist", None) is not None:
        return
    app.state.ui_dist = root

    async def ui(path: str) -> Response:
        found = _static_file(root, path)
        if found is not None:
            cache = IMMUTABLE if path.startswith("assets/") else "no-cache"
            return FileResponse(found, headers={"cache-control": cache})
        # A missing asset is a 404, not the page: HTML served as a script only confuses.
        if path.startswith("assets/") or "." in path.rsplit("/", 1)[-1]:
            raise HTTPException(404, f"no file /{path}")
        return FileResponse(index, headers={"cache-control": "no-cache", **UI_HEADERS})

    app.add_api_route("/{path:clora_ui_path}", ui, methods=["GET", "HEAD"], include_in_schema=False)
