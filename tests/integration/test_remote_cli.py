"""Administration from anywhere: personal access tokens, and `clora --url URL --token TOKEN`
running the admin commands through the HTTP API (no database access on the admin's side)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner, Result

from app.cli import main
from app.core.db import unit_of_work
from app.models import User
from app.models.enums import Role
from app.users import tokens
from tests.helpers.browser import PASSWORD, Browser, user
from tests.helpers.gateway import Gateway, make_tenant

pytestmark = pytest.mark.slow


def pat(email: str) -> str:
    """A personal access token of the user, minted as `clora user token` does."""
    with unit_of_work() as session:
        found = session.query(User).filter_by(email=email).one()
        return tokens.mint(session, found, "test")[1]


class Remote:
    """`clora --url ... --token ...` with CliRunner; no database settings are needed."""

    def __init__(self, gateway: Gateway, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.args = ["--url", gateway.url, "--token", token]
        # The admin's machine: no database to talk to. A command that tried would fail.
        monkeypatch.setenv("CLORA_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
        self.runner = CliRunner()

    def invoke(self, *args: str, stdin: str | None = None) -> Result:
        return self.runner.invoke(main, [*self.args, *args], input=stdin)

    def __call__(self, *args: str) -> str:
        result = self.invoke(*args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output


def test_a_platform_admin_administers_a_stack_remotely(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clora = Remote(gateway, pat(user(None, Role.platform_admin)), monkeypatch)
    slug = f"r-{uuid.uuid4().hex[:8]}"
    assert f"tenant {slug} created" in clora("tenant", "create", slug)
    assert f"agent bot created for {slug}" in clora("tenant", "agent", slug, "bot", "--rank", "8")
    key = clora("tenant", "key", slug).strip()
    answer = openai.OpenAI(base_url=gateway.api_base, api_key=key, max_retries=0)
    assert answer.models.retrieve("bot").id == "bot"  # the key works on /v1

    email = f"op-{uuid.uuid4().hex[:8]}@example.test"
    made = clora("user", "create", email, "--tenant", slug, "--password", PASSWORD)
    assert f"user {email} created as operator in {slug}" in made
    assert f"{email}\toperator\tactive" in clora("user", "list", "--tenant", slug)
    clora("user", "set-role", email, "admin", "--tenant", slug)
    assert Browser(gateway, email).get("/api/keys").status_code == 200
    clora("user", "disable", email, "--tenant", slug)
    assert f"{email}\tadmin\tdisabled" in clora("user", "list", "--tenant", slug)
    clora("user", "enable", email, "--tenant", slug)
    clora("user", "reset-password", email, "--tenant", slug, "--password", "another one")
    assert Browser(gateway, email, "another one").login.status_code == 200

    examples = tmp_path / "eval.jsonl"
    line = {
        "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    }
    examples.write_text(json.dumps(line) + "\n")
    imported = clora("dataset", "import", "bot", str(examples), "--tenant", slug, "--split", "eval")
    assert "1 examples imported" in imported
    exported = clora("dataset", "export", "bot", "--tenant", slug, "--split", "eval")
    assert json.loads(exported.strip())["messages"][-1]["content"] == "4"

    queued = clora("cycle", "run", "bot", "--tenant", slug, "--no-wait")
    run_id = queued.split()[1]
    assert run_id in clora("cycle", "list", "--tenant", slug, "--agent", "bot")
    assert clora("adapter", "list", "bot", "--tenant", slug).strip() == ""  # no version yet
    missing = clora.invoke("adapter", "promote", "bot", "3", "--tenant", slug)
    assert missing.exit_code != 0 and "(HTTP 404)" in missing.output
    assert clora("experiment", "list", "--tenant", slug).strip() == ""


def test_a_tenant_admin_acts_in_its_own_tenant_only(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    fx, other = make_tenant(), make_tenant()
    clora = Remote(gateway, pat(user(fx, Role.admin)), monkeypatch)
    # No --tenant: the user's own tenant (not the local default "demo").
    run_id = clora("cycle", "run", "bot", "--no-wait").split()[1]
    assert clora("cycle", "list").split()[0] == run_id
    key = clora("tenant", "key", fx.tenant.slug).strip()
    assert key.startswith("clora_")
    refused = clora.invoke("adapter", "list", "bot", "--tenant", other.tenant.slug)
    assert refused.exit_code != 0
    assert f"is a user of tenant '{fx.tenant.slug}', not '{other.tenant.slug}'" in refused.output
    refused = clora.invoke("tenant", "key", other.tenant.slug)
    assert refused.exit_code != 0 and other.tenant.slug in refused.output
    refused = clora.invoke("tenant", "create", f"x-{uuid.uuid4().hex[:6]}")
    assert refused.exit_code != 0 and "(HTTP 403)" in refused.output


def test_tokens_are_listed_revoked_and_die_with_their_user(gateway: Gateway) -> None:
    fx = make_tenant()
    email = user(fx, Role.admin)
    token = pat(email)
    http = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"})
    assert http.get("/api/auth/me").json()["email"] == email
    # A write with a token needs no CSRF header (it is not a cookie).
    second = http.post("/api/auth/tokens", json={"name": "laptop"})
    assert second.status_code == 201 and second.json()["token"].startswith("clorapat_")
    listed = http.get("/api/auth/tokens").json()
    assert {t["name"] for t in listed} == {"test", "laptop"}
    assert all(t["token"] is None for t in listed)  # the plaintext is shown once only
    other = httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {second.json()['token']}"}
    )
    assert other.get("/api/keys").status_code == 200
    # Only one's own tokens: another user (another tenant's admin) cannot see or revoke them.
    stranger = httpx.Client(
        base_url=gateway.url,
        headers={"Authorization": f"Bearer {pat(user(make_tenant(), Role.admin))}"},
    )
    assert stranger.post(f"/api/auth/tokens/{second.json()['id']}/revoke").status_code == 404
    assert [t["name"] for t in stranger.get("/api/auth/tokens").json()] == ["test"]
    assert other.get("/api/keys").status_code == 200
    revoked = http.post(f"/api/auth/tokens/{second.json()['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert other.get("/api/keys").status_code == 401
    # Not an API key: /v1 refuses it. A guessed token is refused too.
    assert http.get("/v1/models").status_code == 401
    forged = token[:-4] + "AAAA"
    assert (
        httpx.get(
            f"{gateway.url}/api/auth/me", headers={"Authorization": f"Bearer {forged}"}
        ).status_code
        == 401
    )
    # Disabling the user ends its tokens too.
    admin = Browser(gateway, user(fx, Role.admin))
    target = next(u for u in admin.get("/api/users").json() if u["email"] == email)
    assert admin.patch(f"/api/users/{target['id']}", json={"disabled": True}).status_code == 200
    assert http.get("/api/auth/me").status_code == 401


def test_the_cli_mints_a_token_on_the_server_and_refuses_url_for_local_commands(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    fx = make_tenant()
    email = user(fx, Role.admin)
    runner = CliRunner()
    minted = runner.invoke(main, ["user", "token", email, "--name", "laptop"])
    assert minted.exit_code == 0, minted.output
    token = minted.output.strip().splitlines()[-1]
    me = httpx.get(f"{gateway.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["email"] == email
    clora = Remote(gateway, token, monkeypatch)
    for command in ("up", "migrate", "ps"):
        refused = clora.invoke(command)
        assert refused.exit_code != 0 and "runs on the server itself" in refused.output
    bad = runner.invoke(main, ["--url", gateway.url, "--token", "clorapat_x_y", "cycle", "list"])
    assert bad.exit_code != 0 and "unknown or revoked personal access token" in bad.output
    api_key = runner.invoke(main, ["--url", gateway.url, "--token", fx.key, "cycle", "list"])
    assert api_key.exit_code != 0 and "API keys (clora_...) are for /v1" in api_key.output
    unreachable = runner.invoke(
        main, ["--url", "http://127.0.0.1:9", "--token", token, "cycle", "list"]
    )
    assert unreachable.exit_code != 0 and "cannot reach http://127.0.0.1:9" in unreachable.output


def test_a_new_password_revokes_the_users_tokens_unless_asked_to_keep_them(
    gateway: Gateway,
) -> None:
    """A password changed because it leaked must not leave the thief's token alive; an admin's
    reset of another user's password revokes them too."""
    fx = make_tenant()
    email = user(fx, Role.operator)
    kept, revoked = pat(email), pat(email)

    def works(token: str) -> bool:
        reply = httpx.get(
            f"{gateway.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        return reply.status_code == 200

    assert works(kept) and works(revoked)
    me = Browser(gateway, email)
    new = "another long password 2"
    changed = me.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": new, "keep_tokens": True},
    )
    assert changed.status_code == 200 and works(kept) and works(revoked)
    changed = me.post(
        "/api/auth/password", json={"current_password": new, "new_password": PASSWORD}
    )
    assert changed.status_code == 200
    assert not works(kept) and not works(revoked)
    listed = me.get("/api/auth/tokens").json()
    assert listed and all(t["revoked_at"] is not None for t in listed)
    fresh = pat(email)
    admin = Browser(gateway, user(fx, Role.admin))
    target = next(u for u in admin.get("/api/users").json() if u["email"] == email)
    reset = admin.post(f"/api/users/{target['id']}/password", json={"password": new})
    assert reset.status_code == 200 and not works(fresh)
