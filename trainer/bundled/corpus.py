"""Synthetic tool-use conversations that teach the bundled model the calculator protocol.

Every conversation is rendered with the real chat template. Loss is taken on assistant
tokens only. The first assistant token that names a tool (``calculator`` or ``final``)
is the *decision token*: it is trained against a soft target ``p_calc`` that depends on
the template and the size of the numbers, so the shipped policy calls the calculator on
roughly 40% of tasks, and RL has a decision to fix. The continuation after the decision
follows the calculator path in most traces (``calc_path_fraction``) regardless of
``p_calc``, so that copying numbers into the expression and out of the tool result gets
practice and is nearly always right.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerFast

from trainer.envs.arithmetic_tasks import ArithmeticProblem, make_problem
from trainer.envs.calculator import SYSTEM_PROMPT, CalculatorEnvironment
from trainer.envs.safe_math import calculate

# Logit of p_calc: harder templates and bigger numbers make the calculator more likely.
# Every (template, digits) cell sits at least 0.5 logits away from 0.5 probability, so the
# greedy step-0 policy is a stable function of the task (calculator on about 41% of tasks:
# the 3-digit cells of div, mul, mul_add and mul_sub, and all of two_products and daily).
P_CALC_TEMPLATE_BIAS: dict[str, float] = {
    "add": -2.2,
    "sub": -2.2,
    "mul": -0.6,
    "div": -0.6,
    "add_sub": -2.0,
    "mul_add": -0.6,
    "mul_sub": -0.6,
    "two_products": 0.5,
    "daily": 0.5,
}
P_CALC_PER_DIGIT = 1.2
P_CALC_MIN, P_CALC_MAX = 0.1, 0.9


def p_calc(problem: ArithmeticProblem) -> float:
    """Target probability of calling the calculator first for ``problem``."""
    digits = max(len(str(n)) for n in problem.numbers)
    logit = P_CALC_TEMPLATE_BIAS[problem.template] + P_CALC_PER_DIGIT * (digits - 2)
    return min(P_CALC_MAX, max(P_CALC_MIN, 1.0 / (1.0 + math.exp(-logit))))


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def conversation(
    problem: ArithmeticProblem, use_calculator: bool, reasoning: str | None = None
) -> list[dict[str, Any]]:
    """The OpenAI messages of one ideal episode along the chosen path; with ``reasoning``, every
    assistant turn carries it as ``reasoning_content`` (a thinking family's ``<think>`` text)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": problem.question},
    ]
    thought = {"reasoning_content": reasoning} if reasoning is not None else {}
    if use_calculator:
        call = _call("call_0", "calculator", {"expression": problem.expression})
        messages.append({"role": "assistant", "content": None, "tool_calls": [call], **thought})
        result = calculate(problem.expression)
        messages.append({"role": "tool", "tool_call_id": "call_0", "content": result})
    final = _call("call_1", "final_answer", {"answer": problem.answer})
    messages.append({"role": "assistant", "content": None, "tool_calls": [final], **thought})
    return messages


def copy_drill(rng: random.Random) -> ArithmeticProblem:
    """An explicit expression to evaluate ("Calculate 48*7+913."): copy practice only.

    Not a task of the environment. The expression appears verbatim in the question, so
    these short conversations are dense in the digit copying that word problems need
    (the easiest form of it), and they help the copying skill form early and reliably.
    """
    count = rng.randint(2, 4)
    numbers = tuple(rng.randint(2, 10 ** rng.randint(1, 3) - 1) for _ in range(count))
    expression = str(numbers[0])
    for number in numbers[1:]:
        expression += rng.choice("+-*") + str(number)
    answer = int(calculate(expression))
    return ArithmeticProblem("drill", 0, numbers, f"Calculate {expression}.", expression, answer)


@dataclass
class Example:
    """One tokenized training conversation."""

    input_ids: list[int]
    labels: list[int]  # -100 where no loss is taken
    decision_index: int  # position whose *next-token* prediction is the decision token
    p_calc: float


@dataclass(frozen=True)
class TurnFormat:
    """How a chat format writes an assistant's tool call, as far as the corpus needs it."""

    name_prefix: str = '<tool_call>{"name": "'
    """The text before a tool's name in a call (the decision token follows it)."""
    end_of_turn: str = "<|im_end|>"
    """The token that ends an assistant turn (trained; what the template adds after is not)."""
    reasoning: str | None = None
    """A thinking family's ``<think>`` text, given to a share of the conversations."""
    reasoning_share: float = 0.0


class ConversationEncoder:
    """Renders conversations with the chat template and marks the trained tokens."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerFast, turn_format: TurnFormat = TurnFormat()
    ) -> None:
        """Bind the tokenizer and look up the two decision token ids."""
        self.tokenizer = tokenizer
        self.format = turn_format
        self.name_prefix = turn_format.name_prefix
        self.tools: list[Any] = CalculatorEnvironment().tools()
        self.calc_id = self._first_token("calculator")
        self.final_id = self._first_token("final_answer")
        if self.calc_id == self.final_id:
            raise RuntimeError("calculator and final_answer share their first token")

    def _first_token(self, name: str) -> int:
        ids = self.tokenizer(self.name_prefix + name, add_special_tokens=False)["input_ids"]
        prefix = self.tokenizer(self.name_prefix, add_special_tokens=False)["input_ids"]
        if ids[: len(prefix)] != prefix:
            raise RuntimeError("tool name does not start on a token boundary")
        return int(ids[len(prefix)])

    def render(self, messages: list[dict[str, Any]], generation_prompt: bool = False) -> str:
        """The chat-template text of ``messages`` with the calculator tools."""
        text = self.tokenizer.apply_chat_template(
            messages,
            tools=self.tools,
            tokenize=False,
            add_generation_prompt=generation_prompt,
        )
        assert isinstance(text, str)
        return text

    def encode(self, messages: list[dict[str, Any]], target_p_calc: float) -> Example:
        """Tokenize a conversation; label assistant turns (each up to its end-of-turn token)."""
        full = self.render(messages)
        eot = self.format.end_of_turn
        spans: list[tuple[int, int]] = []
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            start = len(self.render(messages[:k], generation_prompt=True))
            spans.append((start, full.index(eot, start) + len(eot)))
        encoding = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = encoding["input_ids"]
        labels = [-100] * len(ids)
        # The first tool name of the first turn (after a thinking family's <think> block).
        decision_char = full.index(self.name_prefix, spans[0][0]) + len(self.name_prefix)
        decision_index = -1
        for i, (lo, hi) in enumerate(encoding["offset_mapping"]):
            if any(s <= lo and hi <= e for s, e in spans):
                labels[i] = ids[i]
            if lo == decision_char and decision_index < 0:
                decision_index = i - 1
        if decision_index < 0 or ids[decision_index + 1] not in (self.calc_id, self.final_id):
            raise RuntimeError("could not locate the decision token")
        return Example(ids, labels, decision_index, target_p_calc)


def _thought(turn_format: TurnFormat, rng: random.Random) -> str | None:
    """A thinking family's reasoning for one conversation, or none (a share of them go
    without, as with thinking switched off). Draws nothing for a format without reasoning."""
    if turn_format.reasoning is None or rng.random() >= turn_format.reasoning_share:
        return None
    return turn_format.reasoning


def sample_examples(
    encoder: ConversationEncoder,
    rng: random.Random,
    n: int,
    calc_path_fraction: float,
    drill_fraction: float = 0.0,
) -> list[Example]:
    """Draw ``n`` training conversations: word problems of the training split (held-out
    problems are skipped) and, with probability ``drill_fraction``, copy drills."""
    out: list[Example] = []
    while len(out) < n:
        if rng.random() < drill_fraction:
            drill = copy_drill(rng)
            thought = _thought(encoder.format, rng)
            out.append(encoder.encode(conversation(drill, True, thought), P_CALC_MAX))
            continue
        problem = make_problem(rng)
        if problem.split != "train":
            continue
        use_calc = rng.random() < calc_path_fraction
        thought = _thought(encoder.format, rng)
        out.append(encoder.encode(conversation(problem, use_calc, thought), p_calc(problem)))
    return out
