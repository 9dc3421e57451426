"""The family fixtures' chat templates behave like their families' (`trainer/bundled/families.py`),
and the trainer and the rollouts frame them as the engine is given them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from transformers import AutoTokenizer

from trainer.batch import encode_chat
from trainer.bundled.families import FAMILIES, family_dir
from trainer.envs import CalculatorEnvironment
from trainer.envs.tokens import ChatTokens

ENV = CalculatorEnvironment()


def _tokenizer(family: str) -> Any:
    return AutoTokenizer.from_pretrained(family_dir(family), local_files_only=True)


def _call(name: str, arguments: dict[str, Any], reasoning: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return message


EPISODE = [
    {"role": "system", "content": ENV.system_prompt},
    {"role": "user", "content": "Tom has 12 apples and gets 35 more. How many now?"},
    _call("calculator", {"expression": "12+35"}, reasoning="add them"),
    {"role": "tool", "tool_call_id": "c1", "content": "47"},
    _call("final_answer", {"answer": 47}, reasoning="done"),
]


def _render(tokenizer: Any, messages: list[dict[str, Any]], **kw: Any) -> str:
    return str(tokenizer.apply_chat_template(messages, tools=ENV.tools(), tokenize=False, **kw))


def test_qwen3_thinks_on_the_latest_turns_only_and_answers_tools_in_a_user_turn() -> None:
    tokenizer = _tokenizer("qwen3")
    text = _render(tokenizer, EPISODE)
    # Both turns after the last user message keep their reasoning; tool results are a
    # <tool_response> block in a user turn; calls are <tool_call> JSON on their own lines.
    assert '<think>\nadd them\n</think>\n\n<tool_call>\n{"name": "calculator"' in text
    assert "<|im_start|>user\n<tool_response>\n47\n</tool_response><|im_end|>" in text
    assert "<think>\ndone\n</think>" in text
    # A new user message makes those turns history: their <think> blocks go.
    later = _render(tokenizer, [*EPISODE, {"role": "user", "content": "And 3 more?"}])
    assert "<think>" not in later and later.count("<tool_call>") == 2
    # The last turn always opens with a <think> block, empty without reasoning; an earlier
    # one without reasoning has none.
    plain = [{**m, "reasoning_content": None} if m["role"] == "assistant" else m for m in EPISODE]
    bare = _render(tokenizer, plain)
    assert bare.count("<think>\n\n</think>\n\n") == 1
    assert bare.rindex("<think>") > bare.rindex("<tool_response>")
    # enable_thinking=False closes an empty <think> block in the generation prompt.
    asked = EPISODE[:2]
    assert _render(tokenizer, asked, add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    assert _render(tokenizer, asked, add_generation_prompt=True, enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_llama31_dates_its_system_header_and_answers_tools_in_ipython_turns() -> None:
    tokenizer = _tokenizer("llama3")
    text = _render(tokenizer, EPISODE)
    assert text.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
    )
    # The tools go with the first user message, not the system header.
    system, rest = text.split("<|eot_id|>", 1)
    assert "calculator(" not in system
    assert "<|start_header_id|>user<|end_header_id|>\n\nTools: calculator(expression)" in rest
    assert '{"name": "calculator", "parameters": {"expression": "12+35"}}<|eot_id|>' in text
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"47"<|eot_id|>' in text
    assert "add them" not in text  # Llama 3.1 has no reasoning
    dated = _render(tokenizer, EPISODE[:2], date_string="7 Dec 2026")
    assert "Today Date: 7 Dec 2026" in dated


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_fixture_is_its_familys_shape(family: str) -> None:
    spec = FAMILIES[family]
    directory = family_dir(family)
    config = json.loads((directory / "config.json").read_text())
    tokenizer = _tokenizer(family)
    assert config["model_type"] == spec.model_type
    assert tokenizer.eos_token == spec.tokenizer.eos
    ends = json.loads((directory / "generation_config.json").read_text())["eos_token_id"]
    assert ends == [tokenizer.convert_tokens_to_ids(t) for t in spec.end_tokens]
    for token in (*spec.tokenizer.special, *spec.tokenizer.plain):  # each one id
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    built = json.loads((directory / "build_results.json").read_text())
    assert built["calculator_accuracy"] >= 0.98, built


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_correction_trains_after_the_prompt_the_engine_is_given(family: str) -> None:
    """The trainer's prompt for a corrected answer is the generation prompt the engine renders
    for the same messages (what was served), and the trained tokens run to the end of turn."""
    tokenizer = _tokenizer(family)
    asked = EPISODE[:2]
    served = tokenizer(
        _render(tokenizer, asked, add_generation_prompt=True), add_special_tokens=False
    )["input_ids"]
    ids, mask = encode_chat(
        tokenizer,
        [*asked, _call("final_answer", {"answer": 47})],
        tools=ENV.tools(),
        only_last_assistant=True,
    )
    start = mask.index(1.0)
    assert ids[:start] == served
    trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert trained.endswith(FAMILIES[family].tokenizer.eos) and '"answer": 47' in trained


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rollouts_frame_a_tool_result_as_the_template_does(family: str) -> None:
    tokenizer = _tokenizer(family)
    codec = ChatTokens(tokenizer, FAMILIES[family].tool_parser)
    after = tokenizer.decode(codec.after_turn([{"role": "tool", "content": "47"}]))
    expected = {
        "qwen3": "\n<|im_start|>user\n<tool_response>\n47\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n",
        "llama3": '<|start_header_id|>ipython<|end_header_id|>\n\n"47"<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    }[family]
    assert after == expected
