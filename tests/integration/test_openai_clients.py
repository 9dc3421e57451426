"""Real OpenAI-compatible clients against the gateway (real vLLM on CPU, Postgres, Redis):
the openai SDK with every chat parameter it has, langchain-openai and the OpenAI Agents SDK.

The bundled model is tiny: these tests check the protocol (requests succeed, tool calls
parse, runs end), not the quality of the answers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from app.core.db import unit_of_work
from app.models import Interaction
from tests.helpers.adapters import random_adapter
from tests.helpers.agents_sdk import calculator_agents
from tests.helpers.gateway import Gateway, logged_interaction, make_tenant, publish_live
from trainer.envs import CalculatorEnvironment

pytestmark = pytest.mark.slow

ENV = CalculatorEnvironment()
HI = [{"role": "user", "content": "What is 2 plus 3?"}]
CALCULATOR = ENV.tools()[0]["function"]


def logged(gateway: Gateway, completion_id: str) -> Interaction:
    return logged_interaction(gateway, uuid.UUID(hex=completion_id.removeprefix("chatcmpl-")))


def test_every_sdk_parameter_is_accepted(gateway: Gateway) -> None:
    """Each keyword of ``client.chat.completions.create`` (openai 3.57) is accepted; the ones
    the engine cannot act on are ignored, ``user`` is logged as the end user."""
    fx = make_tenant()
    completion = fx.client(gateway).chat.completions.create(
        model=fx.agent.name,
        messages=HI,
        audio={"voice": "alloy", "format": "wav"},
        frequency_penalty=0.1,
        logit_bias={"0": -100},
        logprobs=True,
        top_logprobs=2,
        max_completion_tokens=6,
        metadata={"session": "abc"},
        modalities=["text"],
        moderation={"model": "omni-moderation-latest"},
        n=2,
        parallel_tool_calls=False,
        prediction={"type": "content", "content": "5"},
        presence_penalty=0.1,
        prompt_cache_key="k1",
        prompt_cache_options={"mode": "implicit"},
        prompt_cache_retention="24h",
        reasoning_effort="low",
        response_format={"type": "text"},
        safety_identifier="hashed-user",
        seed=7,
        service_tier="auto",
        stop=["\n\n"],
        store=False,
        temperature=0.7,  # the engine refuses n > 1 with greedy sampling
        top_p=1.0,
        user="end-user-42",
        verbosity="low",
        web_search_options={"search_context_size": "low"},
    )
    assert len(completion.choices) == 2
    assert completion.usage is not None and completion.usage.completion_tokens <= 12
    assert all(c.logprobs and c.logprobs.content for c in completion.choices)
    row = logged(gateway, completion.id)
    assert row.request["end_user"] == "end-user-42"
    assert row.request["store"] is False and row.request["metadata"] == {"session": "abc"}


def test_logit_bias_and_max_completion_tokens_reach_the_engine(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    first = client.chat.completions.create(
        model=fx.agent.name, messages=HI, temperature=0, max_completion_tokens=3
    )
    assert first.usage is not None and first.usage.completion_tokens <= 3
    greedy = logged(gateway, first.id).completion_token_ids
    assert greedy
    banned = client.chat.completions.create(
        model=fx.agent.name,
        messages=HI,
        temperature=0,
        max_completion_tokens=3,
        logit_bias={str(greedy[0]): -100},
    )
    assert logged(gateway, banned.id).completion_token_ids[0] != greedy[0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logit_bias": {"hello": 5}}, "logit_bias"),
        ({"logit_bias": {"5": 500}}, "logit_bias"),
        ({"n": 0}, "n"),
        ({"service_tier": "fastest"}, "service_tier"),
        ({"tool_choice": {"type": "function"}}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"functions": [CALCULATOR], "tools": ENV.tools()}, "functions"),
    ],
)
def test_malformed_values_are_400_with_param(
    gateway: Gateway, extra: dict[str, Any], param: str
) -> None:
    fx = make_tenant()
    with pytest.raises(openai.BadRequestError) as err:
        fx.client(gateway).chat.completions.create(
            model=fx.agent.name, messages=HI, max_tokens=2, extra_body=extra
        )
    assert err.value.status_code == 400
    body = err.value.body
    assert isinstance(body, dict) and body["param"].split(".")[0] == param, body
    assert body["type"] == "invalid_request_error"


def test_unknown_parameter_is_refused_by_name(gateway: Gateway) -> None:
    fx = make_tenant()
    with pytest.raises(openai.BadRequestError) as err:
        fx.client(gateway).chat.completions.create(
            model=fx.agent.name, messages=HI, max_tokens=2, extra_body={"temprature": 0}
        )
    body = err.value.body
    assert isinstance(body, dict)
    assert body["param"] == "temprature" and body["code"] == "unknown_parameter"
    assert "temprature" in body["message"]


def test_tool_choice_forms(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    messages = ENV.initial_messages(ENV.tasks("test", 1, seed=3)[0])

    named = client.chat.completions.create(
        model=fx.agent.name,
        messages=messages,
        tools=ENV.tools(),
        tool_choice={"type": "function", "function": {"name": "calculator"}},
        temperature=0,
        max_tokens=64,
    )
    calls = named.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "calculator"  # type: ignore[union-attr]
    json.loads(calls[0].function.arguments)  # type: ignore[union-attr]

    required = client.chat.completions.create(
        model=fx.agent.name,
        messages=messages,
        tools=ENV.tools(),
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=64,
    )
    assert required.choices[0].message.tool_calls

    none = client.chat.completions.create(
        model=fx.agent.name,
        messages=messages,
        tools=ENV.tools(),
        tool_choice="none",
        temperature=0,
        max_tokens=8,
    )
    assert not none.choices[0].message.tool_calls


def test_legacy_functions_are_mapped_onto_tools(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    messages: list[Any] = ENV.initial_messages(ENV.tasks("test", 1, seed=3)[0])
    completion = client.chat.completions.create(
        model=fx.agent.name,
        messages=messages,
        functions=[CALCULATOR],
        function_call={"name": "calculator"},
        temperature=0,
        max_tokens=64,
    )
    message = completion.choices[0].message
    assert message.function_call is not None and not message.tool_calls
    assert message.function_call.name == "calculator"
    json.loads(message.function_call.arguments)
    row = logged(gateway, completion.id)
    assert row.request["tools"][0]["function"]["name"] == "calculator"

    follow_up = client.chat.completions.create(
        model=fx.agent.name,
        messages=[
            *messages,
            {
                "role": "assistant",
                "content": None,
                "function_call": message.function_call.model_dump(),
            },
            {"role": "function", "name": "calculator", "content": "5"},
        ],
        functions=[CALCULATOR],
        function_call="none",
        temperature=0,
        max_tokens=8,
    )
    assert follow_up.choices[0].message.function_call is None


def test_legacy_function_call_streams_as_function_call_deltas(gateway: Gateway) -> None:
    fx = make_tenant()
    stream = fx.client(gateway).chat.completions.create(
        model=fx.agent.name,
        messages=ENV.initial_messages(ENV.tasks("test", 1, seed=3)[0]),
        functions=[CALCULATOR],
        function_call={"name": "calculator"},
        temperature=0,
        max_tokens=64,
        stream=True,
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            assert not choice.delta.tool_calls
            if choice.delta.function_call:
                name += choice.delta.function_call.name or ""
                arguments += choice.delta.function_call.arguments or ""
            finish = choice.finish_reason or finish
    assert name == "calculator"
    json.loads(arguments)
    assert finish in {"function_call", "stop"}


def test_response_formats(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    for fmt in (
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    ):
        completion = client.chat.completions.create(
            model=fx.agent.name,
            messages=HI,
            response_format=fmt,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=48,
        )
        choice = completion.choices[0]
        if choice.finish_reason == "stop":
            parsed = json.loads(choice.message.content or "")
            if fmt["type"] == "json_schema":
                assert isinstance(parsed["answer"], int)


def test_stream_without_usage_and_async_client(gateway: Gateway) -> None:
    fx = make_tenant()

    async def run() -> tuple[str, bool]:
        client = fx.async_client(gateway)
        stream = await client.chat.completions.create(
            model=fx.agent.name,
            messages=HI,
            temperature=0,
            max_completion_tokens=6,
            stream=True,
            store=False,
            user="u1",
        )
        text, usage_seen = "", False
        async for chunk in stream:
            usage_seen = usage_seen or chunk.usage is not None
            for choice in chunk.choices:
                text += choice.delta.content or ""
        plain = await client.chat.completions.create(
            model=fx.agent.name, messages=HI, temperature=0, max_completion_tokens=6
        )
        assert (plain.choices[0].message.content or "") == text
        return text, usage_seen

    text, usage_seen = asyncio.run(run())
    assert not usage_seen  # not asked for with stream_options.include_usage


def test_models_retrieve_is_scoped_to_the_tenant(gateway: Gateway, tmp_path: Path) -> None:
    fx, other = make_tenant("calculator"), make_tenant("secret")
    version = publish_live(fx, random_adapter(tmp_path / "v", seed=3))
    client = fx.client(gateway)
    model = client.models.retrieve("calculator")
    assert model.id == "calculator" and model.owned_by == fx.tenant.slug
    pinned = client.models.retrieve(f"calculator@v{version.number}")
    assert pinned.id == f"calculator@v{version.number}"
    assert {m.id for m in client.models.list()} == {"calculator", pinned.id}
    for missing in ("secret", "nope", f"calculator@v{version.number + 1}"):
        with pytest.raises(openai.NotFoundError) as err:
            client.models.retrieve(missing)
        body = err.value.body
        assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    assert other.client(gateway).models.retrieve("secret").id == "secret"


def test_stream_holds_its_concurrency_slot(gateway: Gateway) -> None:
    """With a cap of 1: a second request is refused while a stream is open, and admitted as
    soon as it ended or its client went away."""
    fx = make_tenant()
    client = fx.client(gateway)
    limits = gateway.app.state.gateway.limits
    saved = limits.max_concurrency
    limits.max_concurrency = 1
    try:
        long = client.chat.completions.create(
            model=fx.agent.name,
            messages=HI,
            max_tokens=800,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        next(iter(long))  # the stream is open and producing
        assert limits.active(fx.tenant.id) == 1
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=fx.agent.name, messages=HI, max_tokens=2)
        long.close()  # the client goes away mid-stream
        deadline = time.monotonic() + 15
        while limits.active(fx.tenant.id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert limits.active(fx.tenant.id) == 0
        client.chat.completions.create(model=fx.agent.name, messages=HI, max_tokens=2)

        short = client.chat.completions.create(
            model=fx.agent.name, messages=HI, max_tokens=4, stream=True
        )
        assert list(short)
        # Read to the end: the very next request is admitted, no waiting.
        client.chat.completions.create(model=fx.agent.name, messages=HI, max_tokens=2)
    finally:
        limits.max_concurrency = saved
    assert limits.active(fx.tenant.id) == 0


def test_langchain_chat_openai_with_tools(gateway: Gateway) -> None:
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_openai import ChatOpenAI

    fx = make_tenant()
    llm = ChatOpenAI(
        model=fx.agent.name,
        base_url=gateway.api_base,
        api_key=fx.key,  # type: ignore[arg-type]
        temperature=0,
        max_completion_tokens=64,
        max_retries=0,
    )
    # The calculator task's prompt: the tiny model was trained to answer it with a tool call.
    messages = ENV.initial_messages(ENV.tasks("test", 1, seed=3)[0])
    bound = llm.bind_tools(ENV.tools())
    answer = bound.invoke(messages)
    assert isinstance(answer, AIMessage) and answer.tool_calls, answer
    assert answer.tool_calls[0]["name"] in {"calculator", "final_answer"}

    merged: AIMessageChunk | None = None
    for chunk in bound.stream(messages):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and merged.tool_calls
    assert merged.tool_calls[0]["name"] == answer.tool_calls[0]["name"]


def test_openai_agents_sdk_runs_a_tool_agent(gateway: Gateway) -> None:
    """The Agents SDK's chat-completions model: a run that calls the tool and ends, then a
    second turn over the first run's history."""
    from agents import OpenAIChatCompletionsModel, Runner

    fx = make_tenant()
    model = OpenAIChatCompletionsModel(model=fx.agent.name, openai_client=fx.async_client(gateway))
    sdk = calculator_agents(model)

    async def run() -> None:
        first = await sdk.tool_run()
        follow_up = [*first.to_input_list(), {"role": "user", "content": "Thanks. And 3+3?"}]
        second = await Runner.run(sdk.talker, follow_up, max_turns=2)
        assert isinstance(second.final_output, str)

    asyncio.run(run())


def test_every_choice_is_logged_and_can_be_rated(gateway: Gateway) -> None:
    """With n > 1 each choice keeps its own tokens and logprobs; feedback names the choice."""
    from sqlalchemy import select

    from app.feedback.compile import compile_feedback
    from app.models import TrainingExample

    fx = make_tenant()
    completion = fx.client(gateway).chat.completions.create(
        model=fx.agent.name, messages=HI, n=3, temperature=1.0, seed=11, max_tokens=6
    )
    row = logged(gateway, completion.id)
    choices = row.output["choices"]  # type: ignore[index]
    assert [c["index"] for c in choices] == [0, 1, 2]
    for choice, public in zip(choices, completion.choices, strict=True):
        assert choice["message"]["content"] == public.message.content
        assert len(choice["completion_token_ids"]) == len(choice["completion_logprobs"]) >= 1
    assert choices[0]["completion_token_ids"] == row.completion_token_ids

    def rate(index: int) -> httpx.Response:
        return httpx.post(
            f"{gateway.api_base}/feedback",
            json={
                "interaction_id": completion.id,
                "kind": "rating",
                "rating": {"thumbs": "up"},
                "choice_index": index,
            },
            headers={"Authorization": f"Bearer {fx.key}"},
            timeout=30,
        )

    bad = rate(3)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "choice_index"
    made = rate(2)
    assert made.status_code == 201, made.text
    feedback_id = uuid.UUID(hex=made.json()["id"].removeprefix("fb-"))
    with unit_of_work() as session:
        compile_feedback(session, fx.tenant.id, feedback_id)
    with unit_of_work() as session:
        example = session.scalars(
            select(TrainingExample).where(TrainingExample.feedback_id == feedback_id)
        ).one()
        assert example.payload["completion_token_ids"] == choices[2]["completion_token_ids"]
        assert example.payload["sampling_logprobs"] == choices[2]["completion_logprobs"]
        assert example.payload["output"]["content"] == choices[2]["message"]["content"]


def test_every_streamed_choice_is_logged(gateway: Gateway) -> None:
    fx = make_tenant()
    stream = fx.client(gateway).chat.completions.create(
        model=fx.agent.name, messages=HI, n=2, temperature=1.0, seed=5, max_tokens=6, stream=True
    )
    texts = ["", ""]
    completion_id = ""
    for chunk in stream:
        completion_id = chunk.id
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    row = logged(gateway, completion_id)
    choices = row.output["choices"]  # type: ignore[index]
    assert [c["message"]["content"] or "" for c in choices] == texts
    for choice in choices:
        assert len(choice["completion_token_ids"]) == len(choice["completion_logprobs"]) >= 1
