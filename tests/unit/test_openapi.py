"""The committed OpenAPI schema that the web UI's client is generated from matches the app."""

from __future__ import annotations

import json
from pathlib import Path

from app.main import app

COMMITTED = Path(__file__).resolve().parents[2] / "frontend" / "openapi.json"


def test_committed_openapi_schema_matches_the_app() -> None:
    """After an API change run `cd frontend && npm run gen:api` and commit both files."""
    assert app.openapi() == json.loads(COMMITTED.read_text()), (
        "frontend/openapi.json drifts from the app: run `cd frontend && npm run gen:api`"
    )
