"""The bundled clora-tiny model: offline loading, vLLM agreement, tool calls, step-0 accuracy."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from app.engine.launcher import EngineProcess
from tests.fixtures_engine import MODEL_DIR
from trainer.bundled.evaluate import summarize
from trainer.envs import CalculatorEnvironment, Task
from trainer.envs.runner import run_episodes

pytest_plugins = ["tests.fixtures_engine"]

ENV = CalculatorEnvironment()
TOOLS: list[Any] = ENV.tools()
MAX_NEW_TOKENS = 48


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)


@pytest.fixture(scope="module")
def hf_model() -> Any:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(
        MODEL_DIR, local_files_only=True, dtype=torch.float32
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


def test_model_directory_is_a_small_float32_hf_model() -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "README.md",
    ):
        assert (MODEL_DIR / name).is_file(), name
    assert sum(f.stat().st_size for f in MODEL_DIR.iterdir()) < 30e6
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["tie_word_embeddings"]
    with safe_open(str(MODEL_DIR / "model.safetensors"), "pt") as weights:
        assert all(weights.get_tensor(k).dtype == torch.float32 for k in weights.keys())  # noqa: SIM118
    assert "chat_template" in json.loads((MODEL_DIR / "tokenizer_config.json").read_text())


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
    tasks = ENV.tasks("test", 100, seed=0)
    report = _accuracy_report(engine, tasks)
    print(
        f"step-0 accuracy {report.accuracy:.2f}, calculator used {report.calculator_rate:.2f}, "
        f"calculator episodes right {report.calculator_accuracy:.2f}, "
        f"finishes {report.finish_reasons}"
    )
    assert 0.30 <= report.accuracy <= 0.50
    assert report.calculator_accuracy >= 0.95
    assert report.finish_reasons.get("malformed", 0) + report.finish_reasons.get("length", 0) <= 5
    first = report.episodes[0].assistant_turns[0]
    assert first.prompt_token_ids and first.completion_token_ids and first.logprobs
    assert len(first.logprobs) == len(first.completion_token_ids)
