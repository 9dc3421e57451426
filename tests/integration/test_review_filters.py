"""The review queue's version filter is scoped: a version number means the named agent's version
(or, without an agent, the first agent by name that has one), and only this tenant's."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.agents.schemas import AgentIn
from app.agents.service import create_agent
from app.core.db import unit_of_work
from app.models.enums import Role
from tests.helpers.adapters import random_adapter
from tests.helpers.browser import Browser, user
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant, publish_live

pytestmark = pytest.mark.slow


def _ask(gateway: Gateway, fx: TenantFixture, text: str) -> str:
    reply = fx.client(gateway).chat.completions.create(
        model=fx.agent.name, messages=[{"role": "user", "content": text}], max_tokens=2
    )
    return reply.id


def test_the_version_filter_is_scoped_to_the_agent_and_the_tenant(
    gateway: Gateway, tmp_path: Path
) -> None:
    alpha = make_tenant("alpha")
    with unit_of_work() as session:
        agent = create_agent(
            session, alpha.tenant.id, AgentIn(name="beta", lora_rank=8, lora_alpha=8)
        )
    beta = TenantFixture(alpha.tenant, agent, alpha.key)
    other = make_tenant("alpha")  # another tenant, the same agent name, more versions
    source = random_adapter(tmp_path / "source", seed=5, rank=8)
    served = {"alpha@base": _ask(gateway, alpha, "a0")}
    publish_live(alpha, source)
    served["alpha@v1"] = _ask(gateway, alpha, "a1")
    publish_live(alpha, source)
    served["alpha@v2"] = _ask(gateway, alpha, "a2")
    publish_live(beta, source)
    served["beta@v1"] = _ask(gateway, beta, "b1")
    for _ in range(3):
        publish_live(other, source)
    served["other@v3"] = _ask(gateway, other, "o3")
    gateway.drain()
    admin = Browser(gateway, user(alpha, Role.admin))

    def listed(query: str) -> set[str]:
        answer = admin.get(f"/api/interactions?{query}")
        assert answer.status_code == 200, answer.text
        return {item["id"] for item in answer.json()["items"]}

    print(served)  # shown on failure
    assert listed("") == {v for k, v in served.items() if not k.startswith("other")}
    assert listed("agent=alpha&version=1") == {served["alpha@v1"]}
    assert listed("agent=alpha&version=2") == {served["alpha@v2"]}
    assert listed("agent=beta&version=1") == {served["beta@v1"]}
    assert listed("version=1") == {served["alpha@v1"]}  # alpha comes first by name
    # The other tenant's version 3 is not this tenant's: no such version here.
    missing = admin.get("/api/interactions?version=3")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "version"
    assert admin.get("/api/interactions?agent=beta&version=2").status_code == 404
    other_admin = Browser(gateway, user(other, Role.admin))
    seen = other_admin.get("/api/interactions?agent=alpha&version=3").json()["items"]
    assert [i["id"] for i in seen] == [served["other@v3"]]
