"""Token-level rollouts without an engine: the chat template's framing, client-side tool-call
parsing, one training row per episode, and the round structure of `trainer.envs.tokens.play`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from app.training.client import rl_batch
from trainer.envs import CalculatorEnvironment
from trainer.envs.tokens import ChatTokens, Sample, play

MODEL_DIR = Path(__file__).resolve().parents[3] / "weights" / "clora-tiny"
ENV = CalculatorEnvironment()


@pytest.fixture(scope="module")
def codec() -> ChatTokens:
    return ChatTokens(AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True))


def _call(name: str, arguments: dict[str, object]) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(arguments)}}}</tool_call>'


def test_appended_turns_equal_the_rendered_conversation(codec: ChatTokens) -> None:
    """Prompt + sampled turn + tool result framing is token for token what the chat template
    renders for the same conversation (when the turn is written the way the template writes it)."""
    task = ENV.tasks("test", 1, seed=2)[0]
    turn = _call("calculator", {"expression": "4*9-5"})
    ids = [*codec.prompt(ENV, task), *codec.encode(turn), codec.end_of_turn]
    ids += codec.after_turn([{"role": "tool", "tool_call_id": "call_0_0", "content": "31"}])
    messages = [
        *ENV.initial_messages(task),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0_0",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "4*9-5"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0_0", "content": "31"},
    ]
    rendered = codec.tokenizer.apply_chat_template(
        messages, tools=ENV.tools(), add_generation_prompt=True, tokenize=False
    )
    assert ids == codec.encode(rendered)


class ScriptedEngine:
    """Answers every prompt from a script keyed by how many turns it has seen; records requests."""

    def __init__(
        self, codec: ChatTokens, turns: list[str], header: str = "<|im_start|>assistant\n"
    ) -> None:
        self.codec, self.turns, self.requests, self.header = codec, turns, [], header

    async def sample(
        self,
        model: str,
        prompts: Sequence[Sequence[int]],
        *,
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int | None,
    ) -> list[list[Sample]]:
        self.requests.append((len(prompts), n, seed))
        header = self.codec.encode(self.header)
        out = []
        for prompt in prompts:
            seen = sum(
                prompt[i : i + len(header)] == header for i in range(len(prompt) - len(header) + 1)
            )
            ids = [*self.codec.encode(self.turns[seen - 1]), self.codec.end_of_turn]
            out.append([Sample(ids, [-0.5] * len(ids), "stop") for _ in range(n)])
        return out


def test_episodes_play_in_rounds_and_train_as_one_row_each(codec: ChatTokens) -> None:
    task = ENV.tasks("train", 1, seed=4)[0]
    expression, answer = task.info["expression"], task.answer
    script = [
        _call("calculator", {"expression": expression}),
        _call("final_answer", {"answer": int(answer)}),
    ]
    engine = ScriptedEngine(codec, script)
    episodes = asyncio.run(
        play(engine, codec, "m", ENV, [task, task], group_size=3, temperature=1.0)
    )
    # Throughput mode: round 1 is one request for both prompts with n=3, round 2 one request.
    assert engine.requests == [(2, 3, None), (6, 1, None)]
    assert all(e.correct and e.turns == 2 and e.used_calculator for e in episodes)
    path = episodes[0].trajectory
    assert path is not None
    sampled = [i for i, m in enumerate(path.loss_mask) if m]
    # Both turns are in the loss, the tool result and prompts are not; logprobs sit on the turns.
    assert len(sampled) == sum(
        len(t.completion_token_ids or []) for t in episodes[0].assistant_turns
    )
    assert all(path.logprobs[i] == -0.5 for i in sampled)
    assert all(path.logprobs[i] == 0.0 for i, m in enumerate(path.loss_mask) if not m)
    tool_text = codec.text(path.token_ids[sampled[0] : sampled[-1]])
    assert str(ENV.execute_tool("calculator", {"expression": expression})) in tool_text
    # Turn 2's prompt is the whole trajectory before it.
    second = episodes[0].assistant_turns[1]
    assert second.prompt_token_ids == path.token_ids[: len(second.prompt_token_ids or [])]

    # Seeded: one request per task for turn 1 (n=3, seeds by episode), then one per episode.
    engine = ScriptedEngine(codec, script)
    asyncio.run(
        play(
            engine,
            codec,
            "m",
            ENV,
            [task, task],
            group_size=3,
            temperature=1.0,
            mode="seeded",
            seed=10,
        )
    )
    assert engine.requests[:2] == [(1, 3, 10), (1, 3, 13)]
    assert sorted(r[2] for r in engine.requests[2:]) == [10, 11, 12, 13, 14, 15]

    # A group that is not all the same trains one row per episode, the whole trajectory.
    episodes[0].reward, episodes[0].correct = 0.0, False
    batch, used, tokens = rl_batch(episodes[:3], 3, "grpo")
    assert used == 1 and batch is not None and len(batch.input_ids) == 3
    assert batch.input_ids[0] == path.token_ids and batch.loss_mask[0] == path.loss_mask
    assert tokens == 3 * len(sampled)
    assert batch.advantages[0] < 0 < batch.advantages[1]


def test_engine_openmp_threads_follow_its_core_binding() -> None:
    from app.sampler.launcher import omp_threads

    assert [omp_threads(b) for b in ("0", "0-3", "0,2", "1-2|3")] == [1, 4, 2, 2]
    assert omp_threads("auto") == omp_threads(None) >= 1


# Templates written from the public description of each family's behaviour, on the bundled
# tokenizer (the framing is about text, not about the vocabulary).
QWEN3_LIKE = (
    "{%- set ns = namespace(last_query=-1) -%}"
    "{%- for m in messages -%}{%- if m['role'] == 'user' and not (m['content'] is string and"
    " m['content'].startswith('<tool_response>')) -%}{%- set ns.last_query = loop.index0 -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if loop.index0 > ns.last_query and (loop.last or m.get('reasoning_content')) -%}"
    "{{- '<think>\\n' + (m.get('reasoning_content') or '') + '\\n</think>\\n\\n' -}}{%- endif -%}"
    "{{- m['content'] or '' -}}{{- '<|im_end|>\\n' -}}"
    "{%- elif m['role'] == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + m['content'] + '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and not enable_thinking -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}{%- endif -%}"
)
LLAMA31_LIKE = (
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December 2023"
    "\\nToday Date: 26 Jul 2024\\n\\n<|eot_id|>' -}}"
    "{%- for m in messages -%}"
    "{%- set role = 'ipython' if m['role'] == 'tool' else m['role'] -%}"
    "{{- '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' + (m['content'] or '') + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)


def _family(template: str, eos: str | None = None, tool_format: str = "hermes") -> ChatTokens:
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)
    if eos:
        tokenizer.add_special_tokens({"eos_token": eos})
    tokenizer.chat_template = template
    return ChatTokens(tokenizer, tool_format)


def test_a_template_that_rewrites_earlier_turns_when_a_tool_answers_still_frames_results() -> None:
    """Qwen3 writes a <think> block only on the last assistant turn after the last user
    message, so the turn renders differently once a tool answers (this refused to frame any
    tool result before). The framing is what the template writes after the turn's end."""
    codec = _family(QWEN3_LIKE)
    after = codec.after_turn([{"role": "tool", "tool_call_id": "c", "content": "31"}])
    expected = "\n<|im_start|>user\n<tool_response>\n31\n</tool_response><|im_end|>\n"
    assert after == codec.encode(expected + "<|im_start|>assistant\n")
    # The episode's tokens are the sampled turn (its <think> block kept as sampled) and then
    # the framing: exactly what the engine is given for the next turn.
    task = ENV.tasks("test", 1, seed=2)[0]
    sampled = codec.encode(
        "<think>\nsubtract\n</think>\n\n" + _call("calculator", {"expression": "9-5"})
    )
    ids = [*codec.prompt(ENV, task), *sampled, codec.end_of_turn, *after]
    text = codec.tokenizer.decode(ids)
    assert "<think>\nsubtract\n</think>" in text and text.endswith("<|im_start|>assistant\n")


def test_a_llama_style_template_frames_tool_results_as_ipython_turns() -> None:
    codec = _family(LLAMA31_LIKE, eos="<|eot_id|>")
    after = codec.after_turn([{"role": "tool", "tool_call_id": "c", "content": "31"}])
    assert codec.tokenizer.decode(after) == (
        "<|start_header_id|>ipython<|end_header_id|>\n\n31<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_a_template_whose_turns_do_not_end_with_the_eos_token_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="end-of-sequence"):
        _family(LLAMA31_LIKE)  # the bundled tokenizer's eos is <|im_end|>, never written here


def test_a_llama_episode_reads_its_json_tool_calls_as_the_engine_does() -> None:
    """Llama 3 calls tools as JSON (``<|python_tag|>`` optional, ``parameters``): with the
    codec's tool format from the model (`llama3_json`), a token-level episode reads them, calls
    the calculator and ends with the final answer."""
    codec = _family(LLAMA31_LIKE, eos="<|eot_id|>", tool_format="llama3_json")
    task = ENV.tasks("train", 1, seed=4)[0]
    expression, answer = task.info["expression"], task.answer
    script = [
        "<|python_tag|>"
        + json.dumps({"name": "calculator", "parameters": {"expression": expression}}),
        json.dumps({"name": "final_answer", "parameters": {"answer": int(answer)}}),
    ]
    header = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    engine = ScriptedEngine(codec, script, header=header)
    episodes = asyncio.run(play(engine, codec, "m", ENV, [task], temperature=1.0))
    assert episodes[0].correct and episodes[0].used_calculator and episodes[0].turns == 2
    # The same text read as Hermes is plain content: the format must follow the model.
    hermes = _family(LLAMA31_LIKE, eos="<|eot_id|>")
    again = asyncio.run(
        play(
            ScriptedEngine(hermes, script, header=header), hermes, "m", ENV, [task], temperature=1.0
        )
    )
    assert not again[0].correct and not again[0].used_calculator


def test_the_llama3_json_reader_follows_vllms_parser() -> None:
    from trainer.envs.base import parse_llama3_json

    content, calls = parse_llama3_json(
        '{"name": "a", "parameters": {"x": 1}}; {"name": "b", "arguments": {"y": "z"}}', 3
    )
    assert content is None
    assert [(c.id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_3_0", "a", {"x": 1}),
        ("call_3_1", "b", {"y": "z"}),
    ]
    assert parse_llama3_json("The answer is 60.", 0) == ("The answer is 60.", [])
    assert parse_llama3_json('{"name": broken', 0) == ('{"name": broken', [])
    with pytest.raises(ValueError, match="no client-side reader"):
        ENV.parse_turn("x", 0, "pythonic")
