"""The bundled clora-tiny model: offline loading, vLLM agreement, tool calls, step-0 accuracy."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from app.sampler.launcher import EngineExitedError, EngineProcess
from tests.helpers.engine import READY_TIMEOUT_S
from trainer.bundled.evaluate import summarize
from trainer.envs import CalculatorEnvironment, Episode, Task
from trainer.envs.runner import run_episode, run_episodes

ENV = CalculatorEnvironment()
TOOLS: list[Any] = ENV.tools()
MAX_NEW_TOKENS = 48


@pytest.fixture(scope="module")
def tokenizer(bundled_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(bundled_model_dir, local_files_only=True)


@pytest.fixture(scope="module")
def hf_model(bundled_model_dir: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(
        bundled_model_dir, local_files_only=True, dtype=torch.float32
    ).eval()


def _greedy(model: Any, tokenizer: Any, messages: list[dict[str, Any]]):
    """(prompt ids, completion ids up to and including <|im_end|>) from transformers."""
    prompt = tokenizer.apply_chat_template(
        messages, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
            eos_token_id=end,
            pad_token_id=tokenizer.pad_token_id,
        )
    return ids, out[0, len(ids) :].tolist()


def _prompts() -> list[list[dict[str, Any]]]:
    """First-turn prompts of held-out tasks plus a second-turn prompt after a tool result."""
    tasks = ENV.tasks("test", 6, seed=11)
    prompts = [ENV.initial_messages(t) for t in tasks]
    task = tasks[0]
    call = {
        "id": "call_0",
        "type": "function",
        "function": {
            "name": "calculator",
            "arguments": json.dumps({"expression": task.info["expression"]}),
        },
    }
    prompts.append(
        [
            *ENV.initial_messages(task),
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": task.answer},
        ]
    )
    return prompts


def test_model_directory_is_a_small_float32_hf_model(bundled_model_dir: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "README.md",
    ):
        assert (bundled_model_dir / name).is_file(), name
    assert sum(f.stat().st_size for f in bundled_model_dir.iterdir()) < 30e6
    config = json.loads((bundled_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["tie_word_embeddings"]
    with safe_open(str(bundled_model_dir / "model.safetensors"), "pt") as weights:
        assert all(weights.get_tensor(k).dtype == torch.float32 for k in weights.keys())  # noqa: SIM118
    assert "chat_template" in json.loads((bundled_model_dir / "tokenizer_config.json").read_text())


def test_tool_call_tags_are_single_tokens_that_survive_decoding(
    tokenizer: Any,
) -> None:
    for tag in ("<tool_call>", "</tool_call>"):
        ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1
        assert tokenizer.decode(ids, skip_special_tokens=True) == tag
    assert len(tokenizer("12345", add_special_tokens=False)["input_ids"]) == 5


def test_chat_template_renders_tool_calls_as_the_model_emits_them(
    tokenizer: Any,
) -> None:
    as_string = {"name": "calculator", "arguments": '{"expression": "2+3"}'}
    as_dict = {"name": "calculator", "arguments": {"expression": "2+3"}}
    conversations: list[Any] = [
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U"},
            {"role": "assistant", "content": None, "tool_calls": [{"function": fn}]},
            {"role": "tool", "tool_call_id": "c", "content": "5"},
        ]
        for fn in (as_string, as_dict)
    ]
    texts = [tokenizer.apply_chat_template(c, tools=TOOLS, tokenize=False) for c in conversations]
    assert texts[0] == texts[1]
    assert (
        '<tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}</tool_call>'
        in texts[0]
    )
    assert "Tools: calculator(expression) final_answer(answer)" in texts[0]
    assert "<|im_start|>tool\n5<|im_end|>" in texts[0]


def test_transformers_greedy_follows_the_protocol_offline(hf_model: Any, tokenizer: Any) -> None:
    for messages in _prompts():
        _, completion = _greedy(hf_model, tokenizer, messages)
        text = tokenizer.decode(completion, skip_special_tokens=True)
        assert text.startswith("<tool_call>") and text.endswith("</tool_call>"), text
        call = json.loads(text.removeprefix("<tool_call>").removesuffix("</tool_call>"))
        assert call["name"] in ("calculator", "final_answer")


@pytest.mark.slow
def test_vllm_and_transformers_greedy_tokens_are_identical(
    engine: EngineProcess, hf_model: Any, tokenizer: Any
) -> None:
    client = openai.OpenAI(base_url=engine.api_base, api_key="unused")
    for messages in _prompts():
        prompt_ids, completion = _greedy(hf_model, tokenizer, messages)
        response = client.chat.completions.create(
            model=engine.served_model_name,
            messages=messages,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            temperature=0.0,
            max_tokens=MAX_NEW_TOKENS,
            extra_body={"return_token_ids": True},
        )
        assert response.prompt_token_ids == prompt_ids  # type: ignore[attr-defined]
        assert response.choices[0].token_ids == completion  # type: ignore[attr-defined]


@pytest.mark.slow
def test_vllm_hermes_parser_returns_real_tool_calls(engine: EngineProcess) -> None:
    client = openai.OpenAI(base_url=engine.api_base, api_key="unused")
    # Three-operation problems with big numbers: the model reaches for the calculator.
    tasks = ENV.tasks("test", 200, seed=5)
    hard = [t for t in tasks if t.difficulty == 3 and max(t.info["numbers"]) >= 10][:5]
    names = []
    for task in hard:
        response = client.chat.completions.create(
            model=engine.served_model_name,
            messages=ENV.initial_messages(task),  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            temperature=0.0,
            max_tokens=MAX_NEW_TOKENS,
        )
        choice = response.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls, choice.message.content
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.id
        arguments = json.loads(call.function.arguments)
        names.append(call.function.name)
        if call.function.name == "calculator":
            assert arguments == {"expression": task.info["expression"]}
    assert "calculator" in names


def _accuracy_report(engine: EngineProcess, tasks: list[Task]) -> Any:
    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=engine.api_base, api_key="unused")
        try:
            return await run_episodes(
                client, engine.served_model_name, ENV, tasks, temperature=0.0, concurrency=16
            )
        finally:
            await client.close()

    return summarize(asyncio.run(run()))


@pytest.mark.slow
def test_step0_greedy_accuracy_on_held_out_tasks_is_in_band(engine: EngineProcess) -> None:
    tasks = ENV.tasks("test", 200, seed=0)  # the same held-out sample the build evaluates
    report = _accuracy_report(engine, tasks)
    print(
        f"step-0 accuracy {report.accuracy:.2f}, calculator used {report.calculator_rate:.2f}, "
        f"calculator episodes right {report.calculator_accuracy:.2f}, "
        f"finishes {report.finish_reasons}"
    )
    assert 0.30 <= report.accuracy <= 0.50
    assert report.calculator_accuracy >= 0.95
    assert report.finish_reasons.get("malformed", 0) + report.finish_reasons.get("length", 0) <= 4
    first = report.episodes[0].assistant_turns[0]
    assert first.prompt_token_ids and first.completion_token_ids and first.logprobs
    assert len(first.logprobs) == len(first.completion_token_ids)


@pytest.mark.slow
def test_sampled_episodes_are_seeded_and_forward_extra_body(engine: EngineProcess) -> None:
    task = ENV.tasks("test", 1, seed=3)[0]

    async def run(seed: int) -> Episode:
        client = openai.AsyncOpenAI(base_url=engine.api_base, api_key="unused")
        try:
            return await run_episode(
                client,
                engine.served_model_name,
                ENV,
                task,
                temperature=1.0,
                seed=seed,
                extra_body={"top_k": 50, "repetition_penalty": 1.0},
            )
        finally:
            await client.close()

    def without_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Tool-call ids are random per response; everything else must repeat."""
        out = []
        for m in messages:
            m = {k: v for k, v in m.items() if k != "tool_call_id"}
            if m.get("tool_calls"):
                m["tool_calls"] = [
                    {k: v for k, v in c.items() if k != "id"} for c in m["tool_calls"]
                ]
            out.append(m)
        return out

    first, again = asyncio.run(run(7)), asyncio.run(run(7))
    assert without_ids(first.messages) == without_ids(again.messages)
    assert first.finish_reason in ("final_answer", "malformed", "no_tool_call", "turn_limit")
    for turn in first.assistant_turns:
        assert turn.completion_token_ids and turn.logprobs
        assert len(turn.logprobs) == len(turn.completion_token_ids)
        assert all(lp <= 0.0 for lp in turn.logprobs)


@pytest.mark.slow
def test_engine_that_dies_raises_a_typed_error_and_leaves_no_process(tmp_path: Path) -> None:
    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    process = EngineProcess(model_dir, log_path=tmp_path / "engine.log")
    process.start()
    pid = process.pid
    assert pid is not None
    try:
        with pytest.raises(EngineExitedError) as failure:
            process.wait_ready(timeout=READY_TIMEOUT_S)
        assert failure.value.log_tail.strip()
    finally:
        process.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
