"""The OpenAI SDK's other text endpoints against the real gateway (real vLLM on CPU,
Postgres, Redis): legacy ``client.completions`` and ``client.responses``.

The bundled model is tiny: these tests check the protocol, not the quality of the answers."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from app.models import Interaction
from tests.helpers.agents_sdk import calculator_agents
from tests.helpers.gateway import Gateway, logged_interaction, make_tenant
from trainer.envs import CalculatorEnvironment

pytestmark = pytest.mark.slow


def logged(gateway: Gateway, public_id: str) -> Interaction:
    hex_id = public_id.split("-", 1)[1] if "-" in public_id else public_id.split("_", 1)[1]
    return logged_interaction(gateway, uuid.UUID(hex=hex_id))


def rate(gateway: Gateway, key: str, public_id: str) -> httpx.Response:
    """Thumbs up on an interaction by the id its endpoint answered with."""
    return httpx.post(
        f"{gateway.api_base}/feedback",
        json={"interaction_id": public_id, "kind": "rating", "rating": {"thumbs": "up"}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_text_completion_is_served_and_logged(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    completion = client.completions.create(
        model=fx.agent.name,
        prompt="The capital of France is",
        max_tokens=5,
        temperature=0,
        seed=3,
        stop=["\n\n"],
        top_p=1.0,
        user="end-user-7",
    )
    assert completion.id.startswith("cmpl-") and completion.object == "text_completion"
    choice = completion.choices[0]
    assert choice.text and choice.logprobs is None
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 5
    row = logged(gateway, completion.id)
    assert row.request["prompt"] == "The capital of France is" and "messages" not in row.request
    assert row.request["end_user"] == "end-user-7"
    assert row.output == {"text": choice.text}
    assert row.prompt_token_ids and len(row.prompt_token_ids) == completion.usage.prompt_tokens
    assert row.completion_token_ids and row.completion_logprobs
    assert len(row.completion_token_ids) == len(row.completion_logprobs)
    rated = rate(gateway, fx.key, completion.id)
    assert rated.status_code == 201, rated.text

    echoed = client.completions.create(
        model=fx.agent.name,
        prompt="The capital of France is",
        max_tokens=5,
        temperature=0,
        echo=True,
        logprobs=2,
    )
    assert echoed.choices[0].text == "The capital of France is" + choice.text
    lp = echoed.choices[0].logprobs
    assert lp is not None and lp.token_logprobs and len(lp.token_logprobs) <= 5


def test_token_id_prompt_and_n(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    first = client.completions.create(model=fx.agent.name, prompt="Hello", max_tokens=3)
    ids = logged(gateway, first.id).prompt_token_ids
    assert ids
    by_ids = client.completions.create(
        model=fx.agent.name, prompt=ids, max_tokens=4, n=2, temperature=1.0, seed=1
    )
    assert len(by_ids.choices) == 2
    row = logged(gateway, by_ids.id)
    assert row.prompt_token_ids == ids and row.request["prompt"] == ids
    assert [c["index"] for c in row.output["choices"]] == [0, 1]  # type: ignore[index]


def test_text_completion_streams(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    stream = client.completions.create(
        model=fx.agent.name, prompt="Once upon a time", max_tokens=6, temperature=0, stream=True
    )
    text, ids = "", set()
    for chunk in stream:
        ids.add(chunk.id)
        assert chunk.object == "text_completion"
        for choice in chunk.choices:
            text += choice.text
    (public_id,) = ids
    assert public_id.startswith("cmpl-")
    plain = client.completions.create(
        model=fx.agent.name, prompt="Once upon a time", max_tokens=6, temperature=0
    )
    assert plain.choices[0].text == text
    row = logged(gateway, public_id)
    assert row.output == {"text": text} and row.stream
    assert row.completion_token_ids and row.prompt_token_ids


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2], "echo": True}, "echo"),
        ({"temprature": 0}, "temprature"),
    ],
)
def test_completion_refusals_name_the_parameter(
    gateway: Gateway, extra: dict[str, object], param: str
) -> None:
    fx = make_tenant()
    with pytest.raises(openai.BadRequestError) as err:
        fx.client(gateway).completions.create(
            model=fx.agent.name, prompt="hi", max_tokens=2, extra_body=extra
        )
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == param, body


ENV = CalculatorEnvironment()
FLAT_TOOLS: list[Any] = [{"type": "function", **t["function"]} for t in ENV.tools()]


def calculator_task() -> tuple[str, str]:
    """The calculator task's system prompt and question (the tiny model answers it with a
    tool call)."""
    messages = ENV.initial_messages(ENV.tasks("test", 1, seed=3)[0])
    system = next(m["content"] for m in messages if m["role"] == "system")
    user = next(m["content"] for m in messages if m["role"] == "user")
    return system, user


def test_responses_create_with_text_and_items(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    response = client.responses.create(
        model=fx.agent.name,
        input="What is 2 plus 3?",
        max_output_tokens=8,
        temperature=0,
        metadata={"run": "r1"},
        store=True,
        user="end-user-9",
    )
    assert response.id.startswith("resp_") and response.status in {"completed", "incomplete"}
    assert response.output_text
    assert response.usage is not None and response.usage.output_tokens <= 8
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    row = logged(gateway, response.id)
    assert row.request["api"] == "responses" and row.request["end_user"] == "end-user-9"
    assert row.request["messages"] == [{"role": "user", "content": "What is 2 plus 3?"}]
    assert row.output and row.output["content"] == response.output_text
    assert row.completion_token_ids and row.completion_logprobs
    rated = rate(gateway, fx.key, response.id)
    assert rated.status_code == 201, rated.text

    items = client.responses.create(
        model=fx.agent.name,
        instructions="Answer briefly.",
        input=[
            {"role": "developer", "content": "Numbers only."},
            {"role": "user", "content": [{"type": "input_text", "text": "2+3?"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "5"}]},
            {"type": "message", "role": "user", "content": "And 3+3?"},
        ],
        max_output_tokens=6,
        temperature=0,
    )
    assert items.output_text is not None and items.instructions == "Answer briefly."
    messages = logged(gateway, items.id).request["messages"]
    assert [m["role"] for m in messages] == ["system", "system", "user", "assistant", "user"]
    assert messages[2]["content"] == "2+3?"


def test_function_call_then_output_with_previous_response_id(gateway: Gateway) -> None:
    fx, other = make_tenant(), make_tenant()
    client = fx.client(gateway)
    system, question = calculator_task()
    first = client.responses.create(
        model=fx.agent.name,
        instructions=system,
        input=question,
        tools=FLAT_TOOLS,
        tool_choice={"type": "function", "name": "calculator"},
        temperature=0,
        max_output_tokens=64,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "calculator", first.output
    json.loads(calls[0].arguments)
    row = logged(gateway, first.id)
    assert row.request["tools"][0]["function"]["name"] == "calculator"
    assert row.output and row.output["tool_calls"][0]["id"] == calls[0].call_id

    second = client.responses.create(
        model=fx.agent.name,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "5"}],
        tools=FLAT_TOOLS,
        tool_choice="none",
        temperature=0,
        max_output_tokens=8,
    )
    assert second.previous_response_id == first.id
    assert not [item for item in second.output if item.type == "function_call"]
    chained = logged(gateway, second.id).request["messages"]
    assert [m["role"] for m in chained] == ["user", "assistant", "tool"]
    assert chained[1]["tool_calls"][0]["id"] == calls[0].call_id
    assert chained[2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "5"}

    assert client.responses.retrieve(first.id).output == first.output
    intruder = other.client(gateway)
    with pytest.raises(openai.NotFoundError):
        intruder.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as err:
        intruder.responses.create(
            model=other.agent.name, previous_response_id=first.id, input="hi", max_output_tokens=2
        )
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "previous_response_id"


def test_responses_stream_events(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    stream = client.responses.create(
        model=fx.agent.name, input="Say hello.", max_output_tokens=8, temperature=0, stream=True
    )
    kinds, text, final = [], "", None
    for ev in stream:
        kinds.append(ev.type)
        if ev.type == "response.output_text.delta":
            text += ev.delta
        if ev.type in {"response.completed", "response.incomplete"}:
            final = ev.response
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert final is not None and final.output_text == text and final.usage is not None
    assert logged(gateway, final.id).output["content"] == text  # type: ignore[index]

    system, question = calculator_task()
    calls = client.responses.create(
        model=fx.agent.name,
        instructions=system,
        input=question,
        tools=FLAT_TOOLS,
        tool_choice="required",
        temperature=0,
        max_output_tokens=64,
        stream=True,
    )
    done = [ev for ev in calls if ev.type == "response.function_call_arguments.done"]
    assert done
    json.loads(done[0].arguments)


def test_responses_refusals(gateway: Gateway) -> None:
    fx = make_tenant()
    client = fx.client(gateway)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model=fx.agent.name, previous_response_id="resp_nope", input="hi")
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(
            model=fx.agent.name,
            input="hi",
            tools=[{"type": "web_search"}],  # type: ignore[list-item]
        )
    assert isinstance(bad.value.body, dict) and bad.value.body["param"].startswith("tools")
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model=fx.agent.name, input="hi", extra_body={"temprature": 1})
    assert isinstance(unknown.value.body, dict) and unknown.value.body["param"] == "temprature"


def test_openai_agents_sdk_default_model_runs_a_tool_agent(gateway: Gateway) -> None:
    """The Agents SDK's default model speaks the Responses API: a run that calls the tool
    and ends, a second turn over the first run's history, and one chained from the first by
    ``previous_response_id``."""
    from agents import ModelBehaviorError, OpenAIResponsesModel, Runner

    fx = make_tenant()
    model = OpenAIResponsesModel(model=fx.agent.name, openai_client=fx.async_client(gateway))
    sdk = calculator_agents(model)

    async def talk(conversation: Any, **kwargs: Any) -> None:
        """One turn without tools: it ends, or the tiny model reaches the token cap, which
        the gateway answers as ``response.incomplete`` and the SDK raises on (as at OpenAI)."""
        try:
            result = await Runner.run(sdk.talker, conversation, max_turns=2, **kwargs)
        except ModelBehaviorError as exc:
            assert "response.incomplete" in str(exc) and "max_output_tokens" in str(exc)
        else:
            assert isinstance(result.final_output, str)

    async def run() -> None:
        first = await sdk.tool_run()
        assert first.last_response_id and first.last_response_id.startswith("resp_")
        await talk([*first.to_input_list(), {"role": "user", "content": "Thanks. And 3+3?"}])
        await talk("And 4+4?", previous_response_id=first.last_response_id)

    asyncio.run(run())
