"""Multi-turn episode runner: drives an environment against an OpenAI-compatible endpoint.

The same code runs against the clora gateway, a bare vLLM server or a GPU deployment.
With vLLM it also asks for token ids (``return_token_ids``) and sampling logprobs, so
an episode carries everything RL needs; other endpoints simply leave those fields None.
The turn logic lives in :class:`EpisodeState`, shared with the in-process evaluation
of the bundled model, so both grade episodes identically.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import openai

from trainer.envs.base import (
    AssistantTurn,
    Environment,
    Episode,
    FinishReason,
    Task,
    ToolCallText,
)

DEFAULT_MAX_TOKENS = 96
DEFAULT_MAX_TURNS = 4


class EpisodeState:
    """The turn-by-turn state machine of one episode (transport-independent)."""

    def __init__(self, env: Environment, task: Task, max_turns: int) -> None:
        """Start from the environment's initial messages for ``task``."""
        self.env = env
        self.task = task
        self.max_turns = max_turns
        self.messages: list[dict[str, Any]] = env.initial_messages(task)
        self.assistant_turns: list[AssistantTurn] = []
        self.used_tool = False
        self.finish: FinishReason | None = None
        self.final_answer: Any = None
        self.reward = 0.0
        self._tool_names = env.tool_names()

    @property
    def done(self) -> bool:
        """Whether the episode has ended."""
        return self.finish is not None

    def record(
        self,
        content: str | None,
        tool_calls: Sequence[ToolCallText],
        turn: AssistantTurn,
    ) -> None:
        """Apply one assistant turn: execute tools, grade a final answer, or end the episode."""
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in tool_calls
            ]
        self.messages.append(message)
        self.assistant_turns.append(turn)
        if turn.finish_reason == "length":
            self.finish = "length"
            return
        if not tool_calls:
            # Text that still contains the tag is a tool call the parser could not read.
            self.finish = "malformed" if content and "<tool_call>" in content else "no_tool_call"
            return
        for call in tool_calls:
            args = _parse_arguments(call.arguments)
            if call.name not in self._tool_names or args is None:
                self.finish = "malformed"
                return
            if call.name == self.env.final_answer_tool:
                if self.env.final_answer_argument not in args:
                    self.finish = "malformed"
                    return
                self.final_answer = args[self.env.final_answer_argument]
                self.reward = float(self.env.reward(self.task, self.final_answer))
                self.finish = "final_answer"
                return
            result = self.env.execute_tool(call.name, args)
            self.used_tool = True
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        if len(self.assistant_turns) >= self.max_turns:
            self.finish = "turn_limit"

    def episode(self) -> Episode:
        """The finished episode record."""
        return Episode(
            task=self.task,
            messages=self.messages,
            reward=self.reward,
            correct=self.reward >= 1.0,
            used_calculator=self.used_tool,
            turns=len(self.assistant_turns),
            finish_reason=self.finish or "turn_limit",
            assistant_turns=self.assistant_turns,
            final_answer=self.final_answer,
        )


def _parse_arguments(raw: str) -> Mapping[str, Any] | None:
    try:
        value = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def _turn_data(response: Any, choice: Any) -> AssistantTurn:
    """Token ids and sampling logprobs from a vLLM response (None when absent)."""
    prompt_ids = getattr(response, "prompt_token_ids", None)
    completion_ids = getattr(choice, "token_ids", None)
    logprobs: list[float] | None = None
    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
    if content is not None:
        logprobs = [float(item.logprob) for item in content]
    return AssistantTurn(
        prompt_token_ids=list(prompt_ids) if prompt_ids is not None else None,
        completion_token_ids=list(completion_ids) if completion_ids is not None else None,
        logprobs=logprobs,
        finish_reason=choice.finish_reason,
    )


async def run_episode(
    client: openai.AsyncOpenAI,
    model: str,
    env: Environment,
    task: Task,
    *,
    temperature: float,
    max_turns: int = DEFAULT_MAX_TURNS,
    seed: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    extra_body: Mapping[str, Any] | None = None,
    token_data: bool = True,
) -> Episode:
    """Play ``task`` to the end on ``model`` and return the graded :class:`Episode`.

    ``extra_body`` is passed through to the endpoint (vLLM sampling extras, or whatever a
    gateway forwards). With ``token_data`` the request asks for prompt/completion token
    ids and sampling logprobs; turn it off for endpoints that reject those fields.
    Endpoint errors (connection, HTTP status) propagate; model misbehaviour never does.
    """
    state = EpisodeState(env, task, max_turns)
    body: dict[str, Any] = {"return_token_ids": True} if token_data else {}
    body.update(extra_body or {})
    tools = env.tools()
    # Only set what was asked for: a null field may be rejected by a strict endpoint.
    options: dict[str, Any] = {"seed": seed} if seed is not None else {}
    if token_data:
        options["logprobs"] = True
    while not state.done:
        response = await client.chat.completions.create(
            model=model,
            messages=state.messages,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            temperature=temperature,
            max_tokens=max_tokens,
            extra_body=body,
            **options,
        )
        choice = response.choices[0]
        calls = [
            ToolCallText(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in (choice.message.tool_calls or [])
            if c.type == "function"
        ]
        state.record(choice.message.content, calls, _turn_data(response, choice))
    return state.episode()


async def run_episodes(
    client: openai.AsyncOpenAI,
    model: str,
    env: Environment,
    tasks: Sequence[Task],
    *,
    concurrency: int = 16,
    temperature: float,
    max_turns: int = DEFAULT_MAX_TURNS,
    seed: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    extra_body: Mapping[str, Any] | None = None,
    token_data: bool = True,
) -> list[Episode]:
    """Run many episodes with at most ``concurrency`` in flight; results keep task order.

    With a ``seed``, episode ``i`` uses ``seed + i`` so that repeated tasks (several
    samples of one prompt) still differ while the whole batch stays reproducible.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, task: Task) -> Episode:
        async with gate:
            return await run_episode(
                client,
                model,
                env,
                task,
                temperature=temperature,
                max_turns=max_turns,
                seed=None if seed is None else seed + index,
                max_tokens=max_tokens,
                extra_body=extra_body,
                token_data=token_data,
            )

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks))))
