"""A signed-in browser for the admin API, and users to sign in with."""

from __future__ import annotations

import uuid

import httpx

from app.core.db import unit_of_work
from app.models.enums import Role
from app.users.service import create_user
from tests.helpers.gateway import Gateway, TenantFixture

PASSWORD = "correct horse battery"


def user(fx: TenantFixture | None, role: Role) -> str:
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@example.test"
    with unit_of_work() as session:
        create_user(session, email, PASSWORD, role, fx.tenant.id if fx else None)
    return email


class Browser:
    """An httpx client that signs in and sends the CSRF token like the UI does."""

    def __init__(self, gateway: Gateway, email: str, password: str = PASSWORD) -> None:
        self.http = httpx.Client(base_url=gateway.url, timeout=60)
        self.login = self.http.post("/api/auth/login", json={"email": email, "password": password})

    def _csrf(self) -> dict[str, str]:
        return {"x-csrf-token": self.http.cookies.get("clora_csrf") or ""}

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.http.get(path, **kw)  # type: ignore[arg-type]

    def post(self, path: str, **kw: object) -> httpx.Response:
        return self.http.post(path, headers=self._csrf(), **kw)  # type: ignore[arg-type]

    def put(self, path: str, **kw: object) -> httpx.Response:
        return self.http.put(path, headers=self._csrf(), **kw)  # type: ignore[arg-type]

    def patch(self, path: str, **kw: object) -> httpx.Response:
        return self.http.patch(path, headers=self._csrf(), **kw)  # type: ignore[arg-type]
