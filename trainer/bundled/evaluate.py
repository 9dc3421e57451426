"""In-process greedy evaluation of a model on calculator episodes (used by the build).

Generates with ``transformers`` in left-padded batches, parses tool calls the way vLLM's
``hermes`` parser does, and grades with the same :class:`EpisodeState` the runner uses.
The test suite measures the shipped model through the real vLLM server instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from trainer.envs.base import AssistantTurn, Environment, Episode, Task
from trainer.envs.runner import DEFAULT_MAX_TOKENS, DEFAULT_MAX_TURNS, EpisodeState


@dataclass
class EvalReport:
    """Accuracy figures of a greedy evaluation."""

    episodes: list[Episode]
    accuracy: float
    calculator_rate: float
    calculator_accuracy: float
    direct_accuracy: float
    finish_reasons: dict[str, int] = field(default_factory=dict)
    by_template: dict[str, float] = field(default_factory=dict)


def summarize(episodes: list[Episode]) -> EvalReport:
    """Aggregate episodes into accuracy overall, with and without the calculator."""

    def acc(items: list[Episode]) -> float:
        return sum(e.correct for e in items) / len(items) if items else 0.0

    calc = [e for e in episodes if e.used_calculator]
    direct = [e for e in episodes if not e.used_calculator]
    templates = sorted({e.task.template for e in episodes})
    return EvalReport(
        episodes=episodes,
        accuracy=acc(episodes),
        calculator_rate=len(calc) / len(episodes) if episodes else 0.0,
        calculator_accuracy=acc(calc),
        direct_accuracy=acc(direct),
        finish_reasons=dict(Counter(e.finish_reason for e in episodes)),
        by_template={t: acc([e for e in episodes if e.task.template == t]) for t in templates},
    )


@torch.no_grad()
def greedy_completions(
    model: Any, prompt_ids: list[list[int]], max_tokens: int, pad_id: int, end_id: int
) -> list[list[int]]:
    """Greedy completions of a batch of prompts (left-padded), each cut after its end token."""
    width = max(len(p) for p in prompt_ids)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompt_ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=max_tokens,
        eos_token_id=end_id,
        pad_token_id=pad_id,
    )
    rows = [row[width:] for row in out.tolist()]
    return [row[: row.index(end_id) + 1] if end_id in row else row for row in rows]


@torch.no_grad()
def greedy_episodes(
    model: Any,
    tokenizer: PreTrainedTokenizerFast,
    env: Environment,
    tasks: list[Task],
    batch_size: int = 50,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    tool_format: str = "hermes",
) -> list[Episode]:
    """Play every task with greedy decoding; return graded episodes in task order."""
    model.eval()
    end_id = int(tokenizer.eos_token_id)
    pad_id = tokenizer.pad_token_id
    states = [EpisodeState(env, task, max_turns) for task in tasks]
    tools: list[Any] = env.tools()
    while True:
        live = [s for s in states if not s.done]
        if not live:
            break
        for start in range(0, len(live), batch_size):
            group = live[start : start + batch_size]
            prompts = [
                tokenizer.apply_chat_template(
                    s.messages, tools=tools, add_generation_prompt=True, tokenize=False
                )
                for s in group
            ]
            prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
            completions = greedy_completions(model, prompt_ids, max_tokens, pad_id, end_id)
            for row, state in enumerate(group):
                completion = completions[row]
                finished = end_id in completion
                text = str(tokenizer.decode(completion, skip_special_tokens=True))
                content, calls = env.parse_turn(text, len(state.assistant_turns), tool_format)
                turn = AssistantTurn(
                    prompt_token_ids=prompt_ids[row],
                    completion_token_ids=completion,
                    logprobs=None,
                    finish_reason=("tool_calls" if calls else "stop") if finished else "length",
                )
                state.record(content, calls, turn)
    return [s.episode() for s in states]
