"""People and roles: tenant admins manage their users; sessions end on the server."""

from __future__ import annotations

import uuid

import httpx
import pytest
from click.testing import CliRunner

from app.cli import main
from app.models.enums import Role
from tests.helpers.browser import PASSWORD, Browser, user
from tests.helpers.gateway import Gateway, make_tenant

pytestmark = pytest.mark.slow
NEW = "a brand new password"


def _email() -> str:
    return f"u-{uuid.uuid4().hex[:8]}@example.test"


def test_an_admin_adds_users_and_changes_their_role(gateway: Gateway) -> None:
    fx = make_tenant()
    admin = Browser(gateway, user(fx, Role.admin))
    email = _email()
    made = admin.post("/api/users", json={"email": email, "password": PASSWORD})
    assert made.status_code == 201 and made.json()["role"] == "operator"
    assert not made.json()["disabled"]
    listed = {u["email"]: u["role"] for u in admin.get("/api/users").json()}
    assert listed[email] == "operator" and len(listed) == 2
    operator = Browser(gateway, email)
    assert operator.login.status_code == 200
    assert operator.get("/api/users").status_code == 403
    assert operator.get("/api/keys").status_code == 403
    promoted = admin.patch(f"/api/users/{made.json()['id']}", json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert operator.get("/api/keys").status_code == 200  # the same session, now an admin
    refused = admin.post(
        "/api/users", json={"email": _email(), "password": PASSWORD, "role": "platform_admin"}
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "role"
    short = admin.post("/api/users", json={"email": _email(), "password": "short"})
    assert short.status_code == 400 and short.json()["error"]["param"] == "password"
    again = admin.post("/api/users", json={"email": email, "password": PASSWORD})
    assert again.status_code == 409


def test_disabling_a_user_ends_their_session_at_once(gateway: Gateway) -> None:
    fx = make_tenant()
    admin = Browser(gateway, user(fx, Role.admin))
    email = user(fx, Role.operator)
    operator = Browser(gateway, email)
    assert operator.get("/api/auth/me").status_code == 200
    target = next(u for u in admin.get("/api/users").json() if u["email"] == email)
    disabled = admin.patch(f"/api/users/{target['id']}", json={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"]
    assert operator.get("/api/auth/me").status_code == 401
    assert Browser(gateway, email).login.status_code == 401
    admin.patch(f"/api/users/{target['id']}", json={"disabled": False})
    assert Browser(gateway, email).login.status_code == 200
    me = next(u for u in admin.get("/api/users").json() if u["role"] == "admin")
    own = admin.patch(f"/api/users/{me['id']}", json={"disabled": True})
    assert own.status_code == 409
    assert admin.patch(f"/api/users/{me['id']}", json={"role": "operator"}).status_code == 409


def test_a_password_reset_ends_the_old_sessions(gateway: Gateway) -> None:
    fx = make_tenant()
    admin = Browser(gateway, user(fx, Role.admin))
    email = user(fx, Role.operator)
    operator = Browser(gateway, email)
    target = next(u for u in admin.get("/api/users").json() if u["email"] == email)
    reset = admin.post(f"/api/users/{target['id']}/password", json={"password": NEW})
    assert reset.status_code == 200
    assert operator.get("/api/auth/me").status_code == 401
    assert Browser(gateway, email).login.status_code == 401
    assert Browser(gateway, email, NEW).login.status_code == 200


def test_changing_ones_password_keeps_this_session_and_ends_the_others(gateway: Gateway) -> None:
    fx = make_tenant()
    email = user(fx, Role.operator)
    here, elsewhere = Browser(gateway, email), Browser(gateway, email)
    wrong = here.post(
        "/api/auth/password", json={"current_password": "not it at all", "new_password": NEW}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["param"] == "current_password"
    changed = here.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW}
    )
    assert changed.status_code == 200 and changed.json()["email"] == email
    assert here.get("/api/auth/me").status_code == 200
    assert elsewhere.get("/api/auth/me").status_code == 401
    assert Browser(gateway, email, NEW).login.status_code == 200


def test_sign_out_ends_the_session_on_the_server(gateway: Gateway) -> None:
    fx = make_tenant()
    browser = Browser(gateway, user(fx, Role.operator))
    copied = dict(browser.http.cookies)
    assert browser.post("/api/auth/logout").json() == {"signed_out": True}
    replay = httpx.get(f"{gateway.url}/api/auth/me", cookies=copied, timeout=30)
    assert replay.status_code == 401


def test_an_admin_cannot_touch_another_tenants_users(gateway: Gateway) -> None:
    a, b = make_tenant(), make_tenant()
    admin_a = Browser(gateway, user(a, Role.admin))
    admin_b = Browser(gateway, user(b, Role.admin))
    victim = next(u for u in admin_b.get("/api/users").json())
    for response in (
        admin_a.patch(f"/api/users/{victim['id']}", json={"disabled": True}),
        admin_a.post(f"/api/users/{victim['id']}/password", json={"password": NEW}),
    ):
        assert response.status_code == 404
    assert all(u["email"] != victim["email"] for u in admin_a.get("/api/users").json())
    assert not next(u for u in admin_b.get("/api/users").json())["disabled"]


def test_the_cli_manages_users(gateway: Gateway) -> None:
    fx = make_tenant()
    email = _email()
    runner = CliRunner()

    def clora(*args: str) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    slug = fx.tenant.slug
    created = clora(
        "user", "create", email, "--tenant", slug, "--role", "admin", "--password", PASSWORD
    )
    assert f"user {email} created as admin in {slug}" in created
    assert f"{email}\tadmin\tactive" in clora("user", "list", "--tenant", slug)
    session = Browser(gateway, email)
    assert session.get("/api/keys").status_code == 200
    clora("user", "set-role", email, "operator", "--tenant", slug)
    assert session.get("/api/keys").status_code == 403
    clora("user", "disable", email, "--tenant", slug)
    assert session.get("/api/auth/me").status_code == 401
    assert f"{email}\toperator\tdisabled" in clora("user", "list", "--tenant", slug)
    clora("user", "enable", email, "--tenant", slug)
    clora("user", "reset-password", email, "--tenant", slug, "--password", NEW)
    assert Browser(gateway, email, NEW).login.status_code == 200
    missing = runner.invoke(main, ["user", "disable", "nobody@example.test", "--tenant", slug])
    assert missing.exit_code != 0 and "no user 'nobody@example.test'" in missing.output


def test_platform_admins_can_be_disabled_but_never_the_last_one(gateway: Gateway) -> None:
    """A platform admin disables another (sessions and tokens stop at once) and enables them
    again; nobody disables themselves, and the last enabled platform admin stays."""
    from app.core.db import unit_of_work
    from app.models import User
    from app.users import tokens
    from app.users.repository import UserRepository
    from app.users.service import set_platform_admin_disabled

    a_email, b_email = user(None, Role.platform_admin), user(None, Role.platform_admin)
    a, b = Browser(gateway, a_email), Browser(gateway, b_email)
    with unit_of_work() as session:
        a_id = session.query(User).filter_by(email=a_email).one().id
        b_row = session.query(User).filter_by(email=b_email).one()
        b_id, b_token = b_row.id, tokens.mint(session, b_row, "laptop")[1]
    by_token = {"Authorization": f"Bearer {b_token}"}
    assert httpx.get(f"{gateway.url}/api/tenants", headers=by_token).status_code == 200
    listed = {r["email"] for r in a.get("/api/platform-admins").json()}
    assert {a_email, b_email} <= listed
    off = a.patch(f"/api/platform-admins/{b_id}", json={"disabled": True})
    assert off.status_code == 200 and off.json()["disabled"] is True
    assert b.get("/api/tenants").status_code == 401
    assert httpx.get(f"{gateway.url}/api/tenants", headers=by_token).status_code == 401
    myself = a.patch(f"/api/platform-admins/{a_id}", json={"disabled": True})
    assert myself.status_code == 409 and "yourself" in myself.json()["error"]["message"]
    assert a.patch(f"/api/platform-admins/{b_id}", json={"disabled": False}).status_code == 200
    assert Browser(gateway, b_email).get("/api/tenants").status_code == 200
    fx = make_tenant()
    assert Browser(gateway, user(fx, Role.admin)).get("/api/platform-admins").status_code == 403

    # Only a left enabled: the CLI on the server (no acting user) cannot disable a.
    with unit_of_work() as session:
        others = [
            u.id
            for u in UserRepository(session).platform_admins()
            if u.email != a_email and u.disabled_at is None
        ]
        for other in others:
            set_platform_admin_disabled(session, None, other, True)
    try:
        refused = CliRunner().invoke(main, ["user", "disable", a_email])
        assert refused.exit_code == 1 and "last enabled platform admin" in refused.output
        assert a.get("/api/tenants").status_code == 200
        again = CliRunner().invoke(main, ["user", "enable", b_email])
        assert again.exit_code == 0, again.output
        done = CliRunner().invoke(main, ["user", "disable", a_email])
        assert done.exit_code == 0 and "disabled" in done.output, done.output
        assert a.get("/api/tenants").status_code == 401
    finally:
        with unit_of_work() as session:
            for other in others:
                set_platform_admin_disabled(session, None, other, False)


def test_two_platform_admins_disabling_each_other_at_once_leave_one(gateway: Gateway) -> None:
    """The last-admin rule holds under a race: both rows are locked, so the second disable
    sees the first and is refused."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from app.core.db import unit_of_work
    from app.core.errors import Conflict
    from app.users.repository import UserRepository
    from app.users.service import set_platform_admin_disabled

    emails = [user(None, Role.platform_admin), user(None, Role.platform_admin)]
    with unit_of_work() as session:
        admins = UserRepository(session).platform_admins()
        ids = {u.email: u.id for u in admins}
        others = [u.id for u in admins if u.email not in emails and u.disabled_at is None]
        for other in others:
            set_platform_admin_disabled(session, None, other, True)
    start = threading.Barrier(2)

    def disable(acting: str, target: str) -> str:
        start.wait()
        try:
            with unit_of_work() as session:
                set_platform_admin_disabled(session, ids[acting], ids[target], True)
        except Conflict as exc:
            return exc.message
        return "disabled"

    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(disable, emails[0], emails[1])
            second = pool.submit(disable, emails[1], emails[0])
            outcomes = sorted([first.result(timeout=30), second.result(timeout=30)])
        print(outcomes)  # shown on failure
        assert outcomes[0] == "disabled" and "last enabled platform admin" in outcomes[1]
        with unit_of_work() as session:
            left = [u for u in UserRepository(session).platform_admins() if u.disabled_at is None]
            assert [u.email for u in left if u.email in emails] != []
            assert len(left) == 1
    finally:
        with unit_of_work() as session:
            for other in others:
                set_platform_admin_disabled(session, None, other, False)
