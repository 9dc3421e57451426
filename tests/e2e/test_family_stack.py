"""`clora up` on each family fixture (`weights/clora-tiny-qwen3`, `weights/clora-tiny-llama3`,
`trainer/bundled/families.py`) as `CLORA_BASE_MODEL_PATH`: the whole loop on the Qwen3 and the
Llama 3.1 chat formats.

- The engine reads the family's tool calls (its parser chosen from the model) and gives them
  back as OpenAI ``tool_calls``, whole and streamed; a Qwen3 ``<think>`` block comes back as
  reasoning, and ``enable_thinking=False`` switches it off.
- The trainer's prompt for a corrected answer is the prompt the engine was given.
- Token-level episodes call the tool, read its answer framed by the family's template, and
  answer.
- Through the gateway: chats with tools, streamed; a correction and `clora cycle run` end in a
  gate verdict; a 2-step RL experiment runs; a fine-tuning job completes.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI
from transformers import AutoTokenizer

from tests.helpers.up import Up, clora_up
from trainer.batch import encode_chat
from trainer.bundled.families import FAMILIES, family_dir
from trainer.envs import CalculatorEnvironment
from trainer.envs.tokens import ChatTokens, CompletionsEngine, play

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ENGINE_MODEL = "clora-base"
ENV = CalculatorEnvironment()
ASK = [
    {"role": "system", "content": ENV.system_prompt},
    {"role": "user", "content": "Calculate 48*7+913."},
]
CALL = ("calculator", {"expression": "48*7+913"})
FIX = {  # a correction: answer straight away, without the calculator
    "content": None,
    "tool_calls": [
        {
            "id": "fix",
            "type": "function",
            "function": {"name": "final_answer", "arguments": '{"answer": 1249}'},
        }
    ],
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Up]]:
    family = str(request.param)
    with clora_up(tmp_path_factory.mktemp(family), family_dir(family)) as up:
        yield family, up


def _tokenizer(family: str) -> Any:
    return AutoTokenizer.from_pretrained(family_dir(family), local_files_only=True)


def _reasoning(part: Any) -> str | None:
    """A message's or delta's reasoning, under either name vLLM has used for it."""
    extra = part.model_extra or {}
    return extra.get("reasoning_content") or extra.get("reasoning")


def _streamed(chunks: Any) -> tuple[str, str, str]:
    """(tool name, arguments, reasoning) gathered from a stream's deltas."""
    name, arguments, reasoning = "", "", ""
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += _reasoning(delta) or ""
        for part in delta.tool_calls or []:
            name += (part.function and part.function.name) or ""
            arguments += (part.function and part.function.arguments) or ""
    return name, arguments, reasoning


def test_the_engine_gives_the_familys_tool_calls_back_in_the_openai_shape(
    stack: tuple[str, Up],
) -> None:
    family, up = stack
    client = OpenAI(base_url=f"{up.engine_url}/v1", api_key="unused", max_retries=0)
    ask: dict[str, Any] = {
        "model": ENGINE_MODEL,
        "messages": ASK,
        "tools": ENV.tools(),
        "temperature": 0,
        "max_tokens": 96,
    }
    reply = client.chat.completions.create(**ask)
    message = reply.choices[0].message
    print(family, message)
    assert reply.choices[0].finish_reason == "tool_calls"
    [call] = message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == CALL
    thinks = FAMILIES[family].turns.reasoning
    assert (_reasoning(message) or "").strip() == (thinks or "")
    assert not (message.content or "").strip()
    name, arguments, reasoning = _streamed(client.chat.completions.create(**ask, stream=True))
    assert (name, json.loads(arguments)) == CALL
    assert reasoning.strip() == (thinks or "")
    if thinks:  # Qwen3's switch: an empty <think> block closes the prompt, no reasoning back
        # (what the fixture answers then is untrained: it always thinks, docs/MODELS.md)
        switched = {**ask, "chat_template_kwargs": {"enable_thinking": False}}
        plain = httpx.post(
            f"{up.engine_url}/v1/chat/completions",
            json={**switched, "return_token_ids": True},
            timeout=120,
        ).json()
        prompt = _tokenizer(family).decode(plain["prompt_token_ids"])
        assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n"), prompt
        message = plain["choices"][0]["message"]
        assert not (message.get("reasoning") or message.get("reasoning_content")), message


def test_the_trainer_prompt_is_the_prompt_the_engine_was_given(stack: tuple[str, Up]) -> None:
    """A correction's SFT row is the served prompt followed by the corrected answer: the ids
    before the trained tokens equal the engine's own ``prompt_token_ids`` for the request."""
    family, up = stack
    body = {
        "model": ENGINE_MODEL,
        "messages": ASK,
        "tools": ENV.tools(),
        "temperature": 0,
        "max_tokens": 96,
        "return_token_ids": True,
    }
    reply = httpx.post(f"{up.engine_url}/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    prompt_ids = reply.json()["prompt_token_ids"]
    tokenizer = _tokenizer(family)
    ids, mask = encode_chat(
        tokenizer, [*ASK, {"role": "assistant", **FIX}], tools=ENV.tools(), only_last_assistant=True
    )
    start = mask.index(1.0)
    print(family, repr(tokenizer.decode(ids[start:])))
    assert ids[:start] == prompt_ids
    trained = [t for t, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(trained[-1]) == FAMILIES[family].tokenizer.eos


def test_token_level_episodes_call_the_tool_and_answer(stack: tuple[str, Up]) -> None:
    family, up = stack
    tokenizer = _tokenizer(family)
    codec = ChatTokens(tokenizer, FAMILIES[family].tool_parser)
    tasks = ENV.tasks("test", 24, seed=0)

    async def episodes() -> list[Any]:
        engine = CompletionsEngine(up.engine_url)
        try:
            return await play(engine, codec, ENGINE_MODEL, ENV, tasks, temperature=0.0)
        finally:
            await engine.close()

    played = asyncio.run(episodes())
    with_tool = [e for e in played if e.used_calculator]
    summary = {
        "family": family,
        "accuracy": sum(e.correct for e in played) / len(played),
        "with_tool": len(with_tool),
        "with_tool_right": sum(e.correct for e in with_tool),
    }
    print(summary)
    assert with_tool and all(e.turns == 2 for e in with_tool), summary
    assert summary["with_tool_right"] >= 0.9 * len(with_tool), summary
    # One token row an episode: the prompt, the sampled turns (trained) and the tool's answer
    # framed as the family's template frames it (not trained).
    row = with_tool[0].trajectory
    assert row is not None
    result = with_tool[0].messages[3]["content"]
    framed = {
        "qwen3": f"<|im_start|>user\n<tool_response>\n{result}\n</tool_response><|im_end|>",
        "llama3": f"<|start_header_id|>ipython<|end_header_id|>\n\n{json.dumps(result)}<|eot_id|>",
    }[family]
    assert framed in tokenizer.decode(row.token_ids)
    sampled = [t for t, m in zip(row.token_ids, row.loss_mask, strict=True) if m]
    assert framed not in tokenizer.decode(sampled)
    assert sampled.count(tokenizer.eos_token_id) == 2


def test_the_gateway_serves_learns_and_runs_jobs_on_the_family(stack: tuple[str, Up]) -> None:
    family, up = stack
    up.cli("tenant", "agent", "demo", "plain")  # an agent without an environment
    client = up.client()
    # Chats with tools, as an agent sends them: whole, then streamed.
    asked = client.chat.completions.create(
        model="plain", messages=ASK, tools=ENV.tools(), temperature=0, max_tokens=96
    )
    [call] = asked.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == CALL
    assert asked.system_fingerprint == "plain@base"
    thinks = FAMILIES[family].turns.reasoning or ""
    assert (_reasoning(asked.choices[0].message) or "").strip() == thinks  # passed through
    stream = client.chat.completions.create(
        model="plain", messages=ASK, tools=ENV.tools(), temperature=0, max_tokens=96, stream=True
    )
    name, arguments, reasoning = _streamed(stream)
    assert (name, json.loads(arguments)) == CALL and reasoning.strip() == thinks
    # Untouched traffic for the gate to compare, then one correction and a cycle.
    for task in ENV.tasks("test", 10, seed=5):
        client.chat.completions.create(
            model="plain",
            messages=ENV.initial_messages(task),
            tools=ENV.tools(),
            temperature=0,
            max_tokens=96,
        )
    up.correct(asked.id, FIX, "plain", until="1249")
    cycle = up.cli("cycle", "run", "plain", "--tenant", "demo")
    print(cycle)
    assert re.search(r"status (succeeded|rejected|needs_evaluation)", cycle), cycle
    # A 2-step RL experiment on the demo agent (token-level rollouts, multi-turn episodes).
    experiment = up.cli(
        "experiment",
        "run",
        "--agent",
        "calculator",
        "--steps",
        "2",
        "--prompts",
        "4",
        "--group",
        "4",
        "--tenant",
        "demo",
    )
    print(experiment)
    assert "succeeded" in experiment, experiment
    # A fine-tuning job through the openai client, on an agent of its own (its validation
    # lines are all the gate has to compare: the job succeeds when they do not regress).
    up.cli("tenant", "agent", "demo", "tuned")
    lines = []
    for a in range(40, 46):
        expression = f"{a}*7+913"
        step = {"name": "calculator", "arguments": json.dumps({"expression": expression})}
        lines.append(
            {
                "messages": [
                    ASK[0],
                    {"role": "user", "content": f"Calculate {expression}."},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c", "type": "function", "function": step}],
                    },
                ],
                "tools": ENV.tools(),
            }
        )
    content = "\n".join(json.dumps(line) for line in lines).encode()
    training = client.files.create(file=("data.jsonl", io.BytesIO(content)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tuned",
        training_file=training.id,
        validation_file=training.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    deadline = time.monotonic() + 900
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(2)
        job = client.fine_tuning.jobs.retrieve(job.id)
    print(job)
    assert job.status == "succeeded", job.error
