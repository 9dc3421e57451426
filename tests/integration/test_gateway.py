"""The serving gateway with the official openai client, real vLLM on CPU, Postgres and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import func, select

from app.adapters.service import adapter_name
from app.core.db import unit_of_work
from app.models import AdapterVersion, Interaction
from app.sampler.launcher import EngineProcess
from tests.helpers.adapters import random_adapter
from tests.helpers.gateway import (
    Gateway,
    TenantFixture,
    logged_interaction,
    make_tenant,
    publish_live,
)
from trainer.envs import CalculatorEnvironment

pytestmark = pytest.mark.slow

ENV = CalculatorEnvironment()


def interaction_row(gateway: Gateway, completion_id: str) -> Interaction:
    """The answer's row, waiting for it: the gateway's own drain loop may have taken the
    record from the stream and not yet committed it when the test drains (a single drain
    found nothing once, in a fresh-clone run)."""
    import uuid

    return logged_interaction(gateway, uuid.UUID(hex=completion_id.removeprefix("chatcmpl-")))


def calculator_messages(seed: int = 3) -> list[dict]:
    task = ENV.tasks("test", 1, seed=seed)[0]
    return ENV.initial_messages(task)


def test_sync_completion_is_answered_and_logged(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model=fx.agent.name,
        messages=[{"role": "user", "content": "What is 2 plus 3?"}],
        max_tokens=12,
        temperature=0,
    )
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == fx.agent.name
    assert completion.system_fingerprint == f"{fx.agent.name}@base"
    assert raw.headers["x-clora-adapter-version"] == completion.system_fingerprint
    assert float(raw.headers["x-clora-overhead-ms"]) >= 0
    assert completion.choices[0].logprobs is None  # not asked for, so not returned
    usage = completion.usage
    assert usage is not None and usage.completion_tokens >= 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    row = interaction_row(gateway, completion.id)
    assert row.tenant_id == fx.tenant.id and row.agent_id == fx.agent.id
    assert row.prompt_token_ids is not None and len(row.prompt_token_ids) == usage.prompt_tokens
    assert row.completion_token_ids is not None
    assert len(row.completion_token_ids) == usage.completion_tokens
    assert row.completion_logprobs is not None
    assert len(row.completion_logprobs) == usage.completion_tokens
    assert all(lp <= 0 for lp in row.completion_logprobs)
    assert row.output is not None and row.output["content"] == completion.choices[0].message.content
    assert row.finish_reason == completion.choices[0].finish_reason


def test_logprobs_returned_when_asked(gateway: Gateway) -> None:
    fx = make_tenant()
    completion = fx.client(gateway).chat.completions.create(
        model=fx.agent.name,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    content = completion.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(len(item.top_logprobs) == 2 for item in content)


def test_tool_call_through_gateway_sync_and_stream(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    messages = calculator_messages()
    completion = client.chat.completions.create(
        model=fx.agent.name, messages=messages, tools=ENV.tools(), temperature=0, max_tokens=64
    )
    calls = completion.choices[0].message.tool_calls
    assert calls, completion.choices[0].message
    assert calls[0].function.name in {"calculator", "final_answer"}
    json.loads(calls[0].function.arguments)
    assert completion.choices[0].finish_reason == "tool_calls"

    async def streamed() -> tuple[str, str, str, str | None]:
        aclient = fx.async_client(gateway)
        stream = await aclient.chat.completions.create(
            model=fx.agent.name,
            messages=messages,
            tools=ENV.tools(),
            temperature=0,
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
        name, args, cid, usage = "", "", "", None
        async for chunk in stream:
            cid = chunk.id
            if chunk.usage:
                usage = chunk.usage.completion_tokens
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    name += call.function.name or ""  # type: ignore[union-attr]
                    args += call.function.arguments or ""  # type: ignore[union-attr]
        return name, args, cid, usage

    name, args, cid, usage_tokens = asyncio.run(streamed())
    assert name == calls[0].function.name
    assert json.loads(args) == json.loads(calls[0].function.arguments)
    row = interaction_row(gateway, cid)
    assert row.stream is True
    assert row.output is not None and row.output["tool_calls"][0]["function"]["name"] == name
    assert row.completion_token_ids is not None and len(row.completion_token_ids) == usage_tokens
    assert row.completion_logprobs is not None and len(row.completion_logprobs) == usage_tokens


def test_two_tenants_interleaved_match_their_adapter_alone(
    gateway: Gateway, engine: EngineProcess, tmp_path: Path
) -> None:
    a, b = make_tenant("helper"), make_tenant("helper")
    va = publish_live(a, random_adapter(tmp_path / "a", seed=1, scale=3.0))
    vb = publish_live(b, random_adapter(tmp_path / "b", seed=2, scale=3.0))
    prompts = [f"Question {i}: what is {i} times 7?" for i in range(6)]

    def direct(fx: TenantFixture, version: AdapterVersion, prompt: str) -> str:
        name = adapter_name(fx.tenant.slug, fx.agent.name, version.number)
        resp = httpx.post(
            f"{engine.url}/v1/chat/completions",
            json={
                "model": name,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
                "max_tokens": 16,
            },
            timeout=60,
        )
        return resp.json()["choices"][0]["message"]["content"]

    expected = {(fx.agent.id, p): direct(fx, v, p) for fx, v in ((a, va), (b, vb)) for p in prompts}
    assert any(expected[(a.agent.id, p)] != expected[(b.agent.id, p)] for p in prompts)

    async def one(fx: TenantFixture, prompt: str) -> tuple[TenantFixture, str, str, str]:
        resp = await fx.async_client(gateway).chat.completions.create(
            model=fx.agent.name,
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=16,
        )
        return fx, prompt, resp.choices[0].message.content or "", resp.system_fingerprint or ""

    async def interleaved() -> list[tuple[TenantFixture, str, str, str]]:
        jobs = [one(fx, p) for p in prompts for fx in (a, b)]
        return await asyncio.gather(*jobs)

    for fx, prompt, text, fingerprint in asyncio.run(interleaved()):
        assert text == expected[(fx.agent.id, prompt)]
        assert fingerprint.startswith(f"{fx.tenant.slug}/")

    # Neither tenant can reach the other's agent or its pinned versions.
    with pytest.raises(openai.NotFoundError):
        a.client(gateway).chat.completions.create(
            model=f"{b.agent.name}@v{vb.number + 5}", messages=[{"role": "user", "content": "x"}]
        )
    other = make_tenant("only-b")
    with pytest.raises(openai.NotFoundError):
        a.client(gateway).chat.completions.create(
            model=other.agent.name, messages=[{"role": "user", "content": "x"}]
        )
    for model in (
        f"{b.tenant.slug}/{b.agent.name}@v{vb.number}",
        adapter_name(b.tenant.slug, "helper", 1),
    ):
        with pytest.raises(openai.NotFoundError):
            a.client(gateway).chat.completions.create(
                model=model, messages=[{"role": "user", "content": "x"}]
            )
    listed = {m.id for m in a.client(gateway).models.list()}
    assert listed == {"helper", f"helper@v{va.number}"}


def test_pinned_version_serves_that_version(gateway: Gateway, tmp_path: Path) -> None:
    fx = make_tenant()
    v1 = publish_live(fx, random_adapter(tmp_path / "v1", seed=5))
    v2 = publish_live(fx, random_adapter(tmp_path / "v2", seed=6))
    client = fx.client(gateway)
    live = client.chat.completions.create(
        model=fx.agent.name, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    pinned = client.chat.completions.create(
        model=f"{fx.agent.name}@v{v1.number}",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
    )
    assert live.system_fingerprint == adapter_name(fx.tenant.slug, fx.agent.name, v2.number)
    assert pinned.system_fingerprint == adapter_name(fx.tenant.slug, fx.agent.name, v1.number)
    row = interaction_row(gateway, pinned.id)
    assert row.adapter_version_id == v1.id
    with unit_of_work() as session:
        stored = session.scalars(
            select(AdapterVersion)
            .where(AdapterVersion.agent_id == fx.agent.id)
            .order_by(AdapterVersion.number)
        ).all()
        assert [v.status for v in stored] == ["retired", "live"]


def test_retired_versions_are_unloaded_when_idle_and_reload_on_demand(
    gateway: Gateway, engine: EngineProcess, tmp_path: Path
) -> None:
    fx = make_tenant()
    v1 = publish_live(fx, random_adapter(tmp_path / "r1", seed=21))
    client = fx.client(gateway)
    client.chat.completions.create(
        model=fx.agent.name, messages=[{"role": "user", "content": "a"}], max_tokens=2
    )
    v2 = publish_live(fx, random_adapter(tmp_path / "r2", seed=22))
    client.chat.completions.create(
        model=fx.agent.name, messages=[{"role": "user", "content": "b"}], max_tokens=2
    )
    old = adapter_name(fx.tenant.slug, fx.agent.name, v1.number)
    new = adapter_name(fx.tenant.slug, fx.agent.name, v2.number)
    state = gateway.app.state.gateway
    unloaded = asyncio.run_coroutine_threadsafe(state.retire_idle(), gateway.app.state.loop).result(
        60
    )
    assert old in unloaded and new not in unloaded
    served = {m["id"] for m in httpx.get(f"{engine.url}/v1/models").json()["data"]}
    assert old not in served and new in served
    pinned = client.chat.completions.create(
        model=f"{fx.agent.name}@v{v1.number}",
        messages=[{"role": "user", "content": "c"}],
        max_tokens=2,
    )
    assert pinned.system_fingerprint == old


def test_agent_default_max_tokens_caps_an_unbounded_request(gateway: Gateway) -> None:
    """A request that sets no max_tokens stops at the agent's default; an explicit one wins."""
    from app.agents.service import update_agent
    from app.models import Agent

    fx = make_tenant()
    with unit_of_work() as session:
        agent = session.get(Agent, fx.agent.id)
        assert agent is not None and agent.settings["default_max_tokens"] == 256
        update_agent(session, agent, default_max_tokens=7)
    client = fx.client(gateway)
    unbounded = client.chat.completions.create(
        model=fx.agent.name,
        messages=[{"role": "user", "content": "What is 12 times 5?"}],
        temperature=0,
    )
    assert unbounded.usage is not None and unbounded.usage.completion_tokens == 7
    assert unbounded.choices[0].finish_reason == "length"
    explicit = client.chat.completions.create(
        model=fx.agent.name,
        messages=[{"role": "user", "content": "What is 12 times 5?"}],
        temperature=0,
        max_tokens=12,
    )
    assert explicit.usage is not None and explicit.usage.completion_tokens == 12


def test_overhead_header_counts_from_arrival(gateway: Gateway) -> None:
    """The gateway's own work before the handler starts (here the route lookup, slowed by
    80 ms) is part of x-clora-overhead-ms, for whole and streamed answers alike."""
    fx = make_tenant()
    client = fx.client(gateway)
    state = gateway.app.state.gateway
    real = state.cached_route

    def slow(*args: object) -> object:
        time.sleep(0.08)
        return real(*args)

    state.cached_route = slow
    try:
        whole = client.chat.completions.with_raw_response.create(
            model=fx.agent.name, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        streamed = client.chat.completions.with_raw_response.create(
            model=fx.agent.name,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            stream=True,
        )
        for _ in streamed.parse():
            pass
    finally:
        state.cached_route = real
    assert float(whole.headers["x-clora-overhead-ms"]) >= 80
    assert float(streamed.headers["x-clora-overhead-ms"]) >= 80


def test_metrics_answer_this_host_only_and_their_labels_stay_bounded(
    gateway: Gateway, tmp_path: Path
) -> None:
    """Without CLORA_METRICS_TOKEN, /metrics answers loopback callers only (a caller behind
    the proxy headers uvicorn trusts is not one); series are per agent, not per version."""
    fx = make_tenant()
    publish_live(fx, random_adapter(tmp_path / "v1", seed=31, rank=4))
    fx.client(gateway).chat.completions.create(
        model=fx.agent.name, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    local = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert local.status_code == 200
    mine = [line for line in local.text.splitlines() if f'tenant="{fx.tenant.slug}"' in line]
    assert any(f'agent="{fx.agent.name}"' in line for line in mine)
    assert mine and not any("@v" in line for line in mine)
    remote = httpx.get(
        f"{gateway.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10
    )
    assert remote.status_code == 401 and "CLORA_METRICS_TOKEN" in remote.json()["error"]["message"]
    for header in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}):
        spoofed = httpx.get(f"{gateway.url}/metrics", headers=header, timeout=10)
        assert spoofed.status_code == 401, header  # a header naming this host is no proof
    from pydantic import SecretStr

    from app.core.config import get_settings

    settings = get_settings()
    try:  # with CLORA_METRICS_TOKEN set, the token opens it from anywhere, and only the token
        settings.metrics_token = SecretStr("scrape-me")
        remote_with = httpx.get(
            f"{gateway.url}/metrics",
            headers={"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer scrape-me"},
            timeout=10,
        )
        local_without = httpx.get(f"{gateway.url}/metrics", timeout=10)
    finally:
        settings.metrics_token = None
    assert remote_with.status_code == 200 and "clora_requests_total" in remote_with.text
    assert local_without.status_code == 401


def test_routes_are_cached_until_a_commit_changes_one(gateway: Gateway, tmp_path: Path) -> None:
    """Repeated requests do not query the route; a promotion committed elsewhere (here a
    plain unit of work, as a worker or the CLI would) is served on the very next request,
    and so is a bulk UPDATE of the agent."""
    from sqlalchemy import update

    from app.models import Agent

    fx = make_tenant()
    state = gateway.app.state.gateway
    real = state.resolve
    lookups: list[str] = []

    def counting(principal: object, model: str, generation: object = None) -> object:
        lookups.append(model)
        return real(principal, model, generation)

    def ask() -> str:
        answer = fx.client(gateway).chat.completions.create(
            model=fx.agent.name, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        return answer.system_fingerprint or ""

    state.resolve = counting
    try:
        publish_live(fx, random_adapter(tmp_path / "v1", seed=41, rank=4))
        served = [ask() for _ in range(4)]
        first = len(lookups)
        publish_live(fx, random_adapter(tmp_path / "v2", seed=42, rank=4))
        after_promotion = ask()
        second = len(lookups)
        with unit_of_work() as session:
            session.execute(
                update(Agent)
                .where(Agent.id == fx.agent.id)
                .values(settings={"default_max_tokens": 3})
            )
        after_bulk_update = len(lookups), ask(), len(lookups)
    finally:
        state.resolve = real
    name = f"{fx.tenant.slug}/{fx.agent.name}"
    assert served == [f"{name}@v1"] * 4 and first == 1
    assert after_promotion == f"{name}@v2" and second == 2
    assert after_bulk_update == (2, f"{name}@v2", 3)


def test_a_key_revoked_by_another_process_is_refused_on_the_next_request(
    gateway: Gateway,
) -> None:
    """The gateway keeps verified keys without hashing them again; a revocation committed
    elsewhere (a plain UPDATE, which clears no cache of this process) still ends the key on
    the very next request, because the commit moved the serving generation."""
    from sqlalchemy import update

    from app.models import ApiKey

    fx = make_tenant()
    client = fx.client(gateway)
    hi = [{"role": "user", "content": "hi"}]
    for _ in range(3):
        client.chat.completions.create(model=fx.agent.name, messages=hi, max_tokens=2)  # type: ignore[arg-type]
    with unit_of_work() as session:
        session.execute(
            update(ApiKey).where(ApiKey.tenant_id == fx.tenant.id).values(revoked_at=func.now())
        )
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=fx.agent.name, messages=hi, max_tokens=2)  # type: ignore[arg-type]
