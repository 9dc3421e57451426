"""Hostile tenants: every way of naming another tenant's things is refused and changes nothing.

Tenant B owns real things of every kind (a live version, a cycle, an experiment, a schedule,
keys, a user, a dataset, an interaction with feedback); every cross-tenant case names B's real
ids, and after each case a checksum of every row of every tenant table of B must be unchanged."""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import unit_of_work
from app.core.public_ids import job_public_id
from app.cycles.schemas import ScheduleUpdate
from app.cycles.service import update_schedule
from app.datasets.service import import_examples
from app.experiments.schemas import ExperimentConfig
from app.experiments.service import create_experiment
from app.files.protocol import public_id as file_public_id
from app.files.service import upload as upload_file
from app.models import CycleRun, FineTuningJob
from app.models.base import Base
from app.models.enums import ExampleSplit, Role, RunStatus
from app.sampler.identity import write_identity_adapter
from app.tenants.service import create_api_key, revoke_api_key
from app.users.service import create_user
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant, publish_live

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"


class World:
    """Tenant A (the attacker) and tenant B (the victim) with some of B's data."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.a, self.b = make_tenant("attacker-bot"), make_tenant("victim-bot")
        reply = self.b.client(gateway).chat.completions.create(
            model=self.b.agent.name, messages=[{"role": "user", "content": "secret"}], max_tokens=3
        )
        self.b_interaction = reply.id
        fb = httpx.post(
            f"{gateway.api_base}/feedback",
            headers=self.auth(self.b),
            json={"interaction_id": reply.id, "kind": "rating", "rating": {"thumbs": "up"}},
        )
        self.b_feedback = fb.json()["id"]
        self._give_b_one_of_everything()
        self.a_operator = self.login(self.a, Role.operator)
        self.a_admin = self.login(self.a, Role.admin)

    def _give_b_one_of_everything(self) -> None:
        """A live version, a finished cycle, an experiment, a schedule, a spare key and a
        revoked one, a user, a dataset, a fine-tuning file and job: the things A's cases name by
        their real ids."""
        folder = Path(tempfile.mkdtemp(prefix="victim-"))
        publish_live(self.b, write_identity_adapter(get_settings().base_model_path, folder / "v"))
        b = self.b.tenant.id
        with unit_of_work() as session:
            self.b_cycle = uuid.uuid4()
            session.add(
                CycleRun(
                    id=self.b_cycle,
                    tenant_id=b,
                    agent_id=self.b.agent.id,
                    status=RunStatus.rejected,
                    finished_at=datetime.now(UTC),
                )
            )
            config = ExperimentConfig(steps=1)
            self.b_experiment = create_experiment(session, b, self.b.agent.name, config).id
            update_schedule(session, b, self.b.agent.id, ScheduleUpdate(mode="every_k", every_k=50))
            self.b_key = create_api_key(session, b, "spare")[0].id
            revoked, self.b_revoked_key = create_api_key(session, b, "revoked")
            revoke_api_key(session, b, revoked.id)
            self.b_user = create_user(
                session, f"victim-{uuid.uuid4().hex[:6]}@example.test", PASSWORD, Role.admin, b
            ).id
            line = {
                "messages": [
                    {"role": "user", "content": "b's secret"},
                    {"role": "assistant", "content": "42"},
                ]
            }
            import_examples(session, b, self.b.agent.id, [json.dumps(line)], ExampleSplit.train)
            upload = upload_file(
                session, b, "b.jsonl", "fine-tune", json.dumps(line).encode(), max_bytes=10_000
            )
            self.b_file = file_public_id(upload.id)
            job = FineTuningJob(
                tenant_id=b,
                agent_id=self.b.agent.id,
                model="victim-bot",
                method={"type": "supervised", "supervised": {"hyperparameters": {}}},
                training_file_id=upload.id,
                seed=1,
                cancelled_at=datetime.now(UTC),  # never runs: B's rows stay still
            )
            session.add(job)
            session.flush()
            self.b_job = job_public_id(job.id)

    def ids(self, path: str) -> str:
        """``path`` with B's real ids in its placeholders."""
        return path.format(
            bi=self.b_interaction,
            b_cycle=self.b_cycle,
            b_experiment=self.b_experiment,
            b_key=self.b_key,
            b_user=self.b_user,
        )

    @staticmethod
    def auth(fx: TenantFixture, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or fx.key}"}

    def login(self, fx: TenantFixture, role: Role) -> httpx.Client:
        email = f"{role.value}-{uuid.uuid4().hex[:8]}@example.test"
        with unit_of_work() as session:
            create_user(session, email, PASSWORD, role, fx.tenant.id)
        client = httpx.Client(base_url=self.gateway.url, timeout=60)
        assert (
            client.post("/api/auth/login", json={"email": email, "password": PASSWORD}).status_code
            == 200
        )
        client.headers["x-csrf-token"] = client.cookies.get("clora_csrf") or ""
        return client

    def b_rows(self) -> str:
        """A checksum of every row of every tenant table that belongs to B (and B's tenant row)."""
        digest = hashlib.sha256()
        with unit_of_work() as session:
            for table in Base.metadata.sorted_tables:
                column = table.c.get("tenant_id")
                if table.name == "tenants":
                    column = table.c.id
                if column is None:
                    continue
                rows = session.execute(select(table).where(column == self.b.tenant.id)).all()
                text = sorted(json.dumps(list(r), default=str) for r in rows)
                digest.update(f"{table.name}:{len(rows)}:{text}".encode())
        return digest.hexdigest()


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> World:
    return World(gateway)


def chat(world: World, model: str, key: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{world.gateway.api_base}/chat/completions",
        headers=world.auth(world.a, key),
        json={"model": model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
        timeout=60,
    )


MODEL_NAMES = [
    "victim-bot",
    "victim-bot@v1",
    "victim-bot@v0",
    "{b}/victim-bot",
    "{b}/victim-bot@v1",
    "../victim-bot",
    "victim-bot/../../etc/passwd",
    "/etc/passwd",
    "victim-bot@v1/../x",
    "clora-identity",
    "clora-base",
    "VICTIM-BOT",
    "victim-bot ",
    "victim-bot%00",
    "attacker-bot@v99",
    "attacker-bot@v-1",
    "attacker-bot@vx",
    "a" * 300,
]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_model_names_outside_the_tenant_are_refused(world: World, model: str) -> None:
    before = world.b_rows()
    resp = chat(world, model.format(b=world.b.tenant.slug))
    assert resp.status_code in (400, 404), resp.text
    assert resp.json()["error"]["param"] == "model"
    assert world.b_rows() == before


@pytest.mark.parametrize(
    "key",
    ["", "Bearer", "clora_", "clora_000000000000_x", "x" * 5000, "{bkey}x", "{bkey_prefix}_forged"],
)
def test_bad_keys_are_401(world: World, key: str) -> None:
    key = key.format(bkey=world.b.key, bkey_prefix="_".join(world.b.key.split("_")[:2]))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = httpx.post(
        f"{world.gateway.api_base}/chat/completions",
        headers=headers,
        json={"model": "attacker-bot", "messages": [{"role": "user", "content": "x"}]},
    )
    assert resp.status_code == 401


FEEDBACK_CASES = [
    {"kind": "rating", "rating": {"thumbs": "down"}},
    {"kind": "correction", "correction": {"content": "pwned"}},
    {
        "kind": "preference",
        "preference": {"chosen": {"content": "a"}, "rejected": {"content": "b"}},
    },
]


@pytest.mark.parametrize("body", FEEDBACK_CASES)
def test_agent_feedback_on_victim_interaction_is_404(world: World, body: dict) -> None:
    before = world.b_rows()
    resp = httpx.post(
        f"{world.gateway.api_base}/feedback",
        headers=world.auth(world.a),
        json={"interaction_id": world.b_interaction, **body},
    )
    assert resp.status_code == 404
    assert world.b_rows() == before


@pytest.mark.parametrize("body", FEEDBACK_CASES)
def test_operator_feedback_on_victim_interaction_is_404(world: World, body: dict) -> None:
    before = world.b_rows()
    resp = world.a_operator.post(
        "/api/feedback", json={"interaction_id": world.b_interaction, **body}
    )
    assert resp.status_code == 404
    assert world.b_rows() == before


def test_preference_against_victim_interaction_is_404(world: World) -> None:
    mine = world.a.client(world.gateway).chat.completions.create(
        model="attacker-bot", messages=[{"role": "user", "content": "x"}], max_tokens=2
    )
    resp = httpx.post(
        f"{world.gateway.api_base}/feedback",
        headers=world.auth(world.a),
        json={
            "interaction_id": mine.id,
            "kind": "preference",
            "preference": {"rejected_interaction_id": world.b_interaction},
        },
    )
    assert (
        resp.status_code == 404
        and resp.json()["error"]["param"] == "preference.rejected_interaction_id"
    )


READS = [
    "/api/interactions/{bi}",
    "/api/agents/victim-bot/versions",
    "/api/agents/victim-bot/schedule",
    "/api/agents/victim-bot/dataset",
    "/api/cycles?agent=victim-bot",
    "/api/interactions?agent=victim-bot",
    "/api/cycles/{b_cycle}",
    "/api/experiments/{b_experiment}",
    "/api/users",
]


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("who", ["operator", "admin"])
def test_reads_of_victim_data_are_404(world: World, path: str, who: str) -> None:
    client = world.a_operator if who == "operator" else world.a_admin
    resp = client.get(world.ids(path))
    if path == "/api/users":  # A's admin lists A's own users only; the operator may not list
        assert resp.status_code == 403 if who == "operator" else str(world.b_user) not in resp.text
        return
    assert resp.status_code in (403, 404), (path, resp.status_code)


def test_agent_key_reads_victim_feedback_404(world: World) -> None:
    resp = httpx.get(
        f"{world.gateway.api_base}/feedback/{world.b_feedback}", headers=world.auth(world.a)
    )
    assert resp.status_code == 404


WRITES = [
    ("post", "/api/agents/victim-bot/cycles", None),
    ("post", "/api/agents/victim-bot/promote", {"version": 1}),
    ("post", "/api/agents/victim-bot/rollback", {}),
    ("put", "/api/agents/victim-bot/schedule", {"mode": "manual"}),
    ("post", "/api/agents/victim-bot/dataset", None),
    ("post", "/api/experiments", {"agent": "victim-bot"}),
    ("post", "/api/experiments/{b_experiment}/cancel", None),
    ("post", "/api/keys/{b_key}/revoke", None),
    ("patch", "/api/users/{b_user}", {"role": "operator"}),
    ("patch", "/api/users/{b_user}", {"disabled": True}),
    ("post", "/api/users/{b_user}/password", {"password": "a new long password"}),
    ("patch", "/api/agents/victim-bot", {"default_max_tokens": 1}),
    ("post", "/api/tenants", {"slug": "evil"}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_admin_of_a_cannot_write_to_b(
    world: World, method: str, path: str, body: dict | None
) -> None:
    before = world.b_rows()
    url = world.ids(path)
    kwargs = {"json": body} if body is not None else {"content": json.dumps({"messages": []})}
    resp = getattr(world.a_admin, method)(url, **kwargs)
    assert resp.status_code in (403, 404), (path, resp.status_code, resp.text)
    assert world.b_rows() == before


FINE_TUNING = [
    ("get", "/files/{b_file}", None),
    ("get", "/files/{b_file}/content", None),
    ("delete", "/files/{b_file}", None),
    ("get", "/fine_tuning/jobs/{b_job}", None),
    ("post", "/fine_tuning/jobs/{b_job}/cancel", None),
    ("get", "/fine_tuning/jobs/{b_job}/events", None),
    ("get", "/fine_tuning/jobs/{b_job}/checkpoints", None),
    ("post", "/fine_tuning/jobs", {"model": "attacker-bot", "training_file": "{b_file}"}),
    ("post", "/fine_tuning/jobs", {"model": "victim-bot", "training_file": "{b_file}"}),
]


@pytest.mark.parametrize(("method", "path", "body"), FINE_TUNING)
def test_another_tenants_files_and_jobs_are_404_to_an_agent_key(
    world: World, method: str, path: str, body: dict | None
) -> None:
    before = world.b_rows()
    names = {"b_file": world.b_file, "b_job": world.b_job}
    text = json.dumps(body)
    for name, value in names.items():
        text = text.replace("{" + name + "}", value)
    kwargs = {"json": json.loads(text)} if body else {}
    resp = httpx.request(
        method,
        f"{world.gateway.api_base}{path.format(**names)}",
        headers=world.auth(world.a),
        **kwargs,
    )
    assert resp.status_code == 404, (path, resp.status_code, resp.text)
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert world.b_rows() == before


def test_platform_tenant_header_is_ignored_for_tenant_users(world: World) -> None:
    resp = world.a_admin.get(f"/api/interactions?tenant={world.b.tenant.slug}")
    assert resp.status_code == 200
    assert all(i["id"] != world.b_interaction for i in resp.json()["items"])


def test_deeply_nested_and_oversized_json_is_refused(world: World) -> None:
    nested = "[" * 5000 + "]" * 5000
    resp = httpx.post(
        f"{world.gateway.api_base}/chat/completions",
        headers={**world.auth(world.a), "content-type": "application/json"},
        content=f'{{"model": "attacker-bot", "messages": {nested}}}',
    )
    assert resp.status_code in (400, 413)
    big = httpx.post(
        f"{world.gateway.api_base}/feedback",
        headers=world.auth(world.a),
        json={
            "interaction_id": world.b_interaction,
            "kind": "correction",
            "correction": {"content": "x" * 2_000_000},
        },
    )
    assert big.status_code == 413


def test_a_revoked_key_opens_nothing(world: World) -> None:
    """B revoked one of its keys: it opens neither B's agent nor anyone else's."""
    before = world.b_rows()
    for model in ("victim-bot", "attacker-bot"):
        resp = chat(world, model, world.b_revoked_key)
        assert resp.status_code == 401, resp.text
    assert world.b_rows() == before


def test_a_live_key_reaches_its_own_tenant_only(world: World) -> None:
    assert chat(world, "victim-bot", world.b.key).status_code == 200
    assert chat(world, "attacker-bot", world.b.key).status_code == 404
