"""The interface every clora RL environment implements, and the records episodes produce.

An environment is a verifiable task family: it draws tasks, offers tools to the model
(OpenAI tools JSON), executes tool calls, and scores the final answer. The episode runner
(:mod:`trainer.envs.runner`) drives any environment against any OpenAI-compatible chat
endpoint, so a tenant's own task plugs in by subclassing :class:`Environment` and adding
it to the registry in :mod:`trainer.envs`. See ``docs/ENVIRONMENTS.md``.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["train", "test"]

#: Why an episode ended.
#: ``final_answer``: the final-answer tool was called (reward decides right or wrong);
#: ``malformed``: a tool call could not be parsed, named an unknown tool, or lacked its
#: arguments; ``no_tool_call``: the model answered in plain text; ``turn_limit``: the
#: episode used ``max_turns`` assistant turns without a final answer; ``length``: the
#: completion hit ``max_tokens`` before finishing.
FinishReason = Literal["final_answer", "malformed", "no_tool_call", "turn_limit", "length"]


@dataclass(frozen=True)
class Task:
    """One task instance: the user prompt and the ground truth the reward checks."""

    id: str
    prompt: str
    answer: str
    template: str
    difficulty: int
    info: Mapping[str, Any] = field(default_factory=dict)
    """Environment-specific extras (for the calculator: numbers and a solving expression)."""


@dataclass(frozen=True)
class ToolCallText:
    """One tool call as the endpoint reported it: id, name, and the raw JSON arguments."""

    id: str
    name: str
    arguments: str


_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)


def parse_hermes(text: str, turn_index: int) -> tuple[str | None, list[ToolCallText]]:
    """Split model text into (content, tool calls) as vLLM's hermes parser does: each
    ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` is one call, and text that
    cannot be read as calls stays plain content."""
    if "<tool_call>" not in text:
        return text, []
    try:
        calls = []
        for k, match in enumerate(_TOOL_CALL.findall(text)):
            obj = json.loads(match[0] or match[1])
            calls.append(
                ToolCallText(
                    id=f"call_{turn_index}_{k}",
                    name=obj["name"],
                    arguments=json.dumps(obj["arguments"], ensure_ascii=False),
                )
            )
    except Exception:  # the parser reports anything unreadable as plain content
        return text, []
    content = text[: text.find("<tool_call>")]
    return content or None, calls


LLAMA_PYTHON_TAG = "<|python_tag|>"


def parse_llama3_json(text: str, turn_index: int) -> tuple[str | None, list[ToolCallText]]:
    """Split model text into (content, tool calls) as vLLM's ``llama3_json`` parser does: a
    turn that starts with ``<|python_tag|>`` or ``{`` holds JSON calls ``{"name": ...,
    "parameters": {...}}`` (or ``"arguments"``) separated by ``;``; anything else, or text that
    cannot be read as calls, stays plain content."""
    body = text.strip()
    if body.startswith(LLAMA_PYTHON_TAG):
        body = body[len(LLAMA_PYTHON_TAG) :].strip()
    elif not body.startswith("{"):
        return text, []
    decoder = json.JSONDecoder()
    calls: list[ToolCallText] = []
    rest = body
    try:
        while rest:
            obj, end = decoder.raw_decode(rest)
            arguments = obj.get("parameters", obj.get("arguments", {}))
            calls.append(
                ToolCallText(
                    id=f"call_{turn_index}_{len(calls)}",
                    name=obj["name"],
                    arguments=json.dumps(arguments, ensure_ascii=False),
                )
            )
            rest = rest[end:].strip().removeprefix(";").strip()
    except (ValueError, KeyError, TypeError, AttributeError):
        return text, []
    return None, calls


TOOL_CALL_PARSERS = {"hermes": parse_hermes, "llama3_json": parse_llama3_json}
"""Client-side readers of a sampled turn, by vLLM's tool-parser name."""


@dataclass
class AssistantTurn:
    """What the endpoint reported for one assistant turn (token-level data for training).

    Each field is None when the endpoint did not return it (an endpoint other than vLLM,
    or a request without ``return_token_ids`` / ``logprobs``).
    """

    prompt_token_ids: list[int] | None
    """The full rendered prompt of this turn, as the engine tokenized it."""
    completion_token_ids: list[int] | None
    """The sampled tokens, including the end-of-turn token when the engine returns it."""
    logprobs: list[float] | None
    """Sampling log-probability of each completion token, aligned with the ids."""
    finish_reason: str | None = None
    """The endpoint's finish reason (``stop``, ``tool_calls``, ``length``)."""


@dataclass
class Trajectory:
    """A whole episode as one token sequence, as token-level rollouts keep it: the first
    prompt, then each sampled turn and the tokens of the tool results that followed it.
    Only sampled tokens count in the loss; tool results and prompts are context."""

    token_ids: list[int]
    loss_mask: list[float]
    """1.0 at every sampled token, 0.0 at prompt and tool-result tokens."""
    logprobs: list[float]
    """The sampling log-probability at each sampled token (0.0 elsewhere)."""


@dataclass
class Episode:
    """The result of running one task to the end: transcript, reward and token data."""

    task: Task
    messages: list[dict[str, Any]]
    """The whole conversation as OpenAI chat messages (system, user, assistant, tool)."""
    reward: float
    correct: bool
    used_calculator: bool
    """True when any tool other than the final-answer tool was executed."""
    turns: int
    """Number of assistant turns sampled."""
    finish_reason: FinishReason
    assistant_turns: list[AssistantTurn] = field(default_factory=list)
    final_answer: Any = None
    """The value passed to the final-answer tool, if it was called."""
    trajectory: Trajectory | None = None
    """The whole episode as tokens (token-level rollouts only, `trainer.envs.tokens`)."""


def message_calls(message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]] | None]:
    """An assistant message's tool calls as (name, arguments), in order; None for a call the
    episode runner could not run (no name, arguments that are not a JSON object)."""
    calls = message.get("tool_calls") if isinstance(message, Mapping) else None
    return [_call(c) for c in calls] if isinstance(calls, list) else []


def _call(call: Any) -> tuple[str, dict[str, Any]] | None:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        return None
    raw = function.get("arguments")
    try:  # as the runner reads them: empty arguments are an empty object
        args = (json.loads(raw) if raw else {}) if isinstance(raw, str) or raw is None else raw
    except json.JSONDecodeError:
        return None
    return (function["name"], args) if isinstance(args, dict) else None


class Environment(ABC):
    """A verifiable tool-use task family: tasks, tools, tool execution and reward."""

    #: Registry name, e.g. ``"calculator"``.
    name: str
    #: System message shown at the start of every episode.
    system_prompt: str
    #: Calling this tool ends the episode; its ``final_answer_argument`` is graded.
    final_answer_tool: str = "final_answer"
    final_answer_argument: str = "answer"

    @abstractmethod
    def tasks(self, split: Split, n: int, seed: int = 0) -> list[Task]:
        """``n`` distinct tasks of ``split``, deterministic in ``seed``.

        The ``test`` split must be disjoint from ``train`` for every seed.
        """

    @abstractmethod
    def tools(self) -> list[dict[str, Any]]:
        """The tools offered to the model, in OpenAI ``tools`` JSON format."""

    @abstractmethod
    def execute_tool(self, name: str, args: Mapping[str, Any]) -> str:
        """Run one tool call and return the text shown to the model. Must never raise."""

    @abstractmethod
    def reward(self, task: Task, final_answer: Any) -> float:
        """Score a final answer against ``task``; 1.0 means correct."""

    def parse_turn(
        self, text: str, turn_index: int, tool_format: str = "hermes"
    ) -> tuple[str | None, list[ToolCallText]]:
        """Read one sampled assistant turn as (content, tool calls): how token-level
        rollouts parse on the client what the engine's tool parser ``tool_format`` (vLLM's
        name; `TOOL_CALL_PARSERS`) would. Hermes ``<tool_call>`` blocks by default, the
        bundled model's format; ``llama3_json`` for Llama 3 models."""
        parser = TOOL_CALL_PARSERS.get(tool_format)
        if parser is None:
            raise ValueError(
                f"no client-side reader for tool format {tool_format!r}; known: "
                f"{sorted(TOOL_CALL_PARSERS)}"
            )
        return parser(text, turn_index)

    def task_of(self, messages: Sequence[Mapping[str, Any]]) -> Task | None:
        """The task a served conversation poses, when it is one of this environment's tasks
        at its first step (one user message, no answer yet) and the environment can tell:
        the learning gate then grades the held-back traffic it compares
        (`grade_first_step`). None, the default, leaves the conversation ungraded."""
        return None

    def grade_first_step(self, task: Task, message: Mapping[str, Any]) -> bool | None:
        """Whether an assistant message, as the first step of ``task``'s episode, is right:
        True or False where the environment can tell, None where it cannot. It follows the
        episode runner's first turn (`trainer.envs.runner`): a call it could not run (a tool
        not offered, arguments that are not a JSON object) is wrong; a final answer is right
        when the reward scores it 1.0 (calls before it count for nothing); other tool calls
        are right when each is (`grade_tool_step`). Text that still holds a ``<tool_call>``
        tag is a call the parser could not read: wrong. Other text goes to `grade_text`,
        which reads it as a user would where the runner gives text no reward."""
        calls = message_calls(message)
        if not calls:
            content = message.get("content") if isinstance(message, Mapping) else None
            if not isinstance(content, str):
                return None
            if "<tool_call>" in content:  # a call the parser could not read: "malformed"
                return False
            return self.grade_text(task, content)
        steps: list[bool | None] = []
        for call in calls:
            if call is None or call[0] not in self.tool_names():
                return False
            name, args = call
            if name == self.final_answer_tool:
                if self.final_answer_argument not in args:
                    return False
                return self.reward(task, args[self.final_answer_argument]) >= 1.0
            steps.append(self.grade_tool_step(task, name, args))
        if False in steps:
            return False
        return True if all(steps) else None

    def grade_tool_step(self, task: Task, name: str, args: Mapping[str, Any]) -> bool | None:
        """Whether one call of a tool other than the final answer is a right step towards
        ``task``'s answer; None, the default, where the environment cannot tell."""
        return None

    def grade_text(self, task: Task, text: str) -> bool | None:
        """Whether a text answer to ``task`` is right, read as the user would read it; None,
        the default, where the environment cannot tell (an episode ends on text with no
        reward, but a customer's reader may well have been answered)."""
        return None

    def tool_names(self) -> set[str]:
        """Names of every tool offered, including the final-answer tool."""
        return {tool["function"]["name"] for tool in self.tools()}

    def initial_messages(self, task: Task) -> list[dict[str, Any]]:
        """The conversation an episode starts from: system prompt and the task prompt."""
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": task.prompt},
        ]
