"""The web UI: the gateway serves the built bundle, and a real browser drives it end to end.

The browser tests run Debian's Chromium (``/usr/bin/chromium``, or ``CHROMIUM_PATH``) through
``@playwright/test`` (``frontend/e2e/ui.spec.mjs``: one test per phase, a trace and screenshots
on failure) against the real stack: Postgres, Redis, the vLLM engine on the bundled model, the
gateway and a Celery worker. The spec holds the browser steps; this module prepares the data, runs the steps phase by phase and checks the outcome from outside.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.agents.schemas import AgentIn
from app.agents.service import create_agent
from app.core.config import REPO_ROOT
from app.core.db import unit_of_work
from app.core.http_errors import install_error_handlers
from app.core.public_ids import parse_completion_id
from app.core.security import verify_password
from app.health.router import router as health_router
from app.models import AdapterVersion, Agent, CycleRun, Feedback, TrainingExample, User
from app.models.enums import Role
from app.users.service import create_user
from app.web import _static_file, mount_ui
from tests.helpers.figures import WRITE_FIGURES
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant
from tests.helpers.learning import (
    TOOLS,
    as_dict,
    calculator_call,
    first_call,
    golden,
    greedy,
    prompt,
)
from tests.helpers.worker import wait_for

FRONTEND = REPO_ROOT / "frontend"
DIST = FRONTEND / "dist"
# docs/screenshots only when the run asks for figures; otherwise a temporary folder.
SCREENSHOTS = (
    REPO_ROOT / "docs" / "screenshots"
    if WRITE_FIGURES
    else Path(tempfile.mkdtemp(prefix="clora-screenshots-"))
)
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "correct horse battery"
# What the build depends on: when any is newer than dist/index.html, the bundle is rebuilt.
BUILD_INPUTS = [
    "src",
    "public",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
]


# ---- serving the bundle (fast) --------------------------------------------------------------


def _fake_dist(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><div id=root></div><!-- clora-ui -->")
    (root / "assets" / "index-abc.js").write_text("console.log('ui')")
    (root / "favicon.svg").write_text("<svg/>")
    return root


def _api_app() -> FastAPI:
    """A stand-in gateway with the same kinds of routes the UI must never shadow."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(health_router)

    @app.post("/v1/chat/completions")
    def chat() -> dict[str, str]:
        return {"ok": "chat"}

    @app.get("/api/agents")
    def agents() -> list[str]:
        return ["bot"]

    return app


def test_ui_serves_pages_and_assets_without_shadowing_the_api(tmp_path: Path) -> None:
    app = _api_app()
    mount_ui(app, _fake_dist(tmp_path / "dist"))

    @app.get("/api/added-after-the-ui")  # routers included after mount_ui still answer
    def late() -> dict[str, bool]:
        return {"late": True}

    client = TestClient(app)
    for path in ("/", "/review", "/review/chatcmpl-0123", "/admin/agents/bot", "/apiary"):
        page = client.get(path)
        assert page.status_code == 200 and "clora-ui" in page.text, path
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-cache"
    asset = client.get("/assets/index-abc.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert client.get("/favicon.svg").text == "<svg/>"
    assert client.head("/review").status_code == 200
    # A missing file is a 404, not the page.
    assert client.get("/assets/index-old.js").status_code == 404
    assert client.get("/logo.png").status_code == 404
    # The API keeps its own answers: JSON, its 404 envelope, its 405.
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/api/agents").json() == ["bot"]
    assert client.get("/api/added-after-the-ui").json() == {"late": True}
    missing = client.get("/api/nope")
    assert missing.status_code == 404 and "error" in missing.json()
    assert client.get("/v1/models").status_code == 404
    assert client.get("/v1/chat/completions").status_code == 405
    assert client.get("/metrics").status_code == 404
    assert client.get("/openapi.json").json()["openapi"]
    assert client.post("/review").status_code == 405


def test_ui_never_serves_files_outside_dist(tmp_path: Path) -> None:
    dist = _fake_dist(tmp_path / "dist")
    (tmp_path / "secret.txt").write_text("no")
    assert _static_file(dist.resolve(), "../secret.txt") is None
    assert _static_file(dist.resolve(), "assets/../../secret.txt") is None
    assert _static_file(dist.resolve(), "favicon.svg") == (dist / "favicon.svg").resolve()


def test_ui_without_a_build_mounts_nothing(tmp_path: Path) -> None:
    app = _api_app()
    routes = len(app.routes)
    mount_ui(app, tmp_path / "not-built")
    assert len(app.routes) == routes
    assert TestClient(app).get("/").status_code == 404


# ---- the browser, end to end (slow) ---------------------------------------------------------


def _newest_mtime(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        if path.is_dir():
            newest = max([newest, *(p.stat().st_mtime for p in path.rglob("*") if p.is_file())])
        elif path.exists():
            newest = max(newest, path.stat().st_mtime)
    return newest


def _npm(*args: str) -> None:
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    subprocess.run(["npm", *args], cwd=FRONTEND, env=env, check=True, timeout=900)


def ensure_frontend_built() -> None:
    """``npm ci`` when node_modules is missing or older than the lockfile; build when stale."""
    if shutil.which("npm") is None:
        pytest.fail("the UI tests need Node.js 20 and npm (see docs/UI.md)")
    installed = FRONTEND / "node_modules" / ".package-lock.json"
    lock = FRONTEND / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        _npm("ci", "--no-audit", "--no-fund")
    index = DIST / "index.html"
    if not index.exists() or index.stat().st_mtime < _newest_mtime(
        [FRONTEND / p for p in BUILD_INPUTS]
    ):
        _npm("run", "build")


def _user(fx: TenantFixture | None, role: Role) -> str:
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@example.test"
    with unit_of_work() as session:
        create_user(session, email, PASSWORD, role, fx.tenant.id if fx else None)
    return email


def _train_examples(fx: TenantFixture) -> int:
    with unit_of_work() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(TrainingExample)
                .where(TrainingExample.agent_id == fx.agent.id, TrainingExample.split == "train")
            )
            or 0
        )


def _browser(phase: str, env: dict[str, str], artifacts: Path, timeout_s: float) -> None:
    """Run one phase of frontend/e2e/ui.spec.mjs; fail with its output when it fails."""
    proc = subprocess.run(
        ["node_modules/.bin/playwright", "test", "--config", "e2e/playwright.config.mjs"],
        cwd=FRONTEND,
        env={**os.environ, **env, "CLORA_E2E_PHASE": phase, "CLORA_E2E_ARTIFACTS": str(artifacts)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, (
        f"browser phase {phase!r} failed (screenshots in {artifacts}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    )


def _calculator_target(seed: int) -> dict:
    return calculator_call(seed)["tool_calls"][0]["function"]


@dataclass
class Story:
    """The data the browser steps work on, and the env that tells the spec about it."""

    fx: TenantFixture
    other: TenantFixture
    wrong_seed: int
    wrong_id: str
    env: dict[str, str]


def prepare_story(gateway: Gateway) -> Story:
    """Tenant A (agents learner, helper, rl) with interactions made by the official client,
    tenant B with one of its own, and users of every role."""
    fx = make_tenant("learner", rank=16, alpha=32)
    with unit_of_work() as session:
        create_agent(session, fx.tenant.id, AgentIn(name="helper", lora_rank=8, lora_alpha=8))
        create_agent(session, fx.tenant.id, AgentIn(name="rl", lora_rank=8, lora_alpha=8))
    other = make_tenant("other-bot")
    operator, admin = _user(fx, Role.operator), _user(fx, Role.admin)
    _user(other, Role.operator)
    platform = _user(None, Role.platform_admin)

    # As in test_learning_loop: a task the base model answers without the calculator, golden
    # held-out tasks it already gets right; the KL term keeps the untouched traffic of the scan.
    wrong_seed = next(
        s
        for s in range(1, 80)
        if first_call(as_dict(greedy(gateway, fx, prompt(s)).choices[0].message))
        != _calculator_target(s)
    )
    golden_seeds = list(
        itertools.islice(
            (
                s
                for s in range(100, 160)
                if s != wrong_seed
                and first_call(as_dict(greedy(gateway, fx, prompt(s)).choices[0].message))
                == _calculator_target(s)
            ),
            5,
        )
    )
    assert len(golden_seeds) == 5  # enough for the held-out signal to count (min_examples)
    golden(gateway, fx, golden_seeds)
    # Asked once more, so that it is the agent's newest interaction in the queue.
    wrong = greedy(gateway, fx, prompt(wrong_seed))
    # Two answers of another agent to one conversation with a tool result, to rate and compare.
    conversation = [
        *prompt(7),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "6 * 7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    client = fx.client(gateway)
    helper_ids = [
        client.chat.completions.create(
            model="helper",
            messages=conversation,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            temperature=1.0,
            max_tokens=48,
            seed=seed,
        ).id
        for seed in (1, 2)
    ]
    other_id = greedy(gateway, other, prompt(7)).id
    gateway.drain()
    target = _calculator_target(wrong_seed)
    env = {
        "CLORA_UI_URL": gateway.url,
        "CLORA_E2E_SCREENSHOTS": str(SCREENSHOTS),
        "CHROMIUM_PATH": CHROMIUM,
        "CLORA_E2E_PASSWORD": PASSWORD,
        "CLORA_E2E_NEW_USER": f"new-{uuid.uuid4().hex[:8]}@example.test",
        "CLORA_E2E_NEW_PASSWORD": "a new password, changed in the UI",
        "CLORA_E2E_OPERATOR_EMAIL": operator,
        "CLORA_E2E_ADMIN_EMAIL": admin,
        "CLORA_E2E_PLATFORM_EMAIL": platform,
        "CLORA_E2E_TENANT": fx.tenant.slug,
        "CLORA_E2E_AGENT": fx.agent.name,
        "CLORA_E2E_RL_AGENT": "rl",
        "CLORA_E2E_INTERACTION": wrong.id,
        "CLORA_E2E_HELPER_INTERACTIONS": ",".join(helper_ids),
        "CLORA_E2E_OTHER_INTERACTION": other_id,
        "CLORA_E2E_OTHER_TENANT": other.tenant.slug,
        "CLORA_E2E_OTHER_AGENT": other.agent.name,
        "CLORA_E2E_TARGET_TOOL": target["name"],
        "CLORA_E2E_TARGET_ARGS": target["arguments"],
    }
    return Story(fx, other, wrong_seed, wrong.id, env)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_operator_corrects_and_admin_learns_in_the_browser(
    gateway: Gateway, worker: object, tmp_path: Path
) -> None:
    """An operator corrects an answer the official client got; an admin runs the cycle in the
    UI and sees the new version promoted; the agent then answers as corrected."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (see docs/UI.md)")
    ensure_frontend_built()
    mount_ui(gateway.app, DIST)  # a no-op when app/main.py already mounts it
    story = prepare_story(gateway)
    fx, other = story.fx, story.other
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    artifacts = tmp_path / "browser"

    _browser("operator", story.env, artifacts, timeout_s=600)
    # The operator's correction came through the same API agents use, authored by them.
    with unit_of_work() as session:
        rows = session.scalars(select(Feedback).where(Feedback.tenant_id == fx.tenant.id)).all()
        corrections = [f for f in rows if f.kind == "correction"]
        assert len(corrections) == 1
        assert corrections[0].interaction_id == parse_completion_id(story.wrong_id)
        assert corrections[0].author_user_id is not None
        assert (
            corrections[0].payload["correction"]["tool_calls"][0]["function"]["name"]
            == "calculator"
        )
        assert {f.kind for f in rows} == {"correction", "rating", "preference"}
        assert not session.scalars(
            select(Feedback).where(Feedback.tenant_id == other.tenant.id)
        ).all()
    # The correction becomes training data (SFT target and a preference pair) before the cycle.
    wait_for(lambda: _train_examples(fx) >= 2, timeout_s=180)

    _browser("admin", story.env, artifacts, timeout_s=1500)
    with unit_of_work() as session:
        run = session.scalars(select(CycleRun).where(CycleRun.agent_id == fx.agent.id)).one()
        assert run.trigger == "manual" and run.status == "succeeded", (run.status, run.metrics)
        agent = session.get(Agent, fx.agent.id)
        live = session.get(AdapterVersion, agent.live_version_id)  # type: ignore[union-attr]
        assert live is not None and live.id == run.candidate_version_id and live.number == 1

    # The agent now answers the corrected task as corrected, from the new version.
    after = greedy(gateway, fx, prompt(story.wrong_seed))
    assert after.system_fingerprint == f"{fx.tenant.slug}/{fx.agent.name}@v1"
    produced = first_call(as_dict(after.choices[0].message))
    target = _calculator_target(story.wrong_seed)
    assert produced is not None and produced["name"] == target["name"]
    assert json.loads(produced["arguments"]) == json.loads(target["arguments"])

    _browser("platform", story.env, artifacts, timeout_s=300)

    # People: the admin adds a user, makes them an admin, disables them, changes their own
    # password; checked from outside too.
    _browser("people", story.env, artifacts, timeout_s=300)
    with unit_of_work() as session:
        added = session.scalars(
            select(User).where(User.email == story.env["CLORA_E2E_NEW_USER"])
        ).one()
        assert added.tenant_id == fx.tenant.id and added.role == Role.admin
        assert added.disabled_at is not None and added.session_epoch == 1
        admin = session.scalars(
            select(User).where(User.email == story.env["CLORA_E2E_ADMIN_EMAIL"])
        ).one()
        assert verify_password(admin.password_hash, story.env["CLORA_E2E_NEW_PASSWORD"])
    for name in (
        "review-queue",
        "correction-diff",
        "experiment-charts",
        "sign-in",
        "interaction",
        "compare",
        "agents",
        "api-keys",
        "agent-versions",
        "schedule-editor",
        "experiments",
        "tenants",
        "isolation",
        "users",
        "access-tokens",
    ):
        shot = SCREENSHOTS / f"{name}.png"
        assert shot.is_file() and shot.stat().st_size > 5_000, shot
