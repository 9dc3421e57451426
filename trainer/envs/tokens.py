"""Token-level rollouts: episodes kept as token ids, sampled through vLLM's completions API.

The chat path (`trainer.envs.runner`) sends every turn as chat messages: the server renders
the template, tokenises, parses tool calls and builds per-token logprob objects, and the
client parses all of it back, about 300 requests per RL step. Here the episode runner keeps
each episode as one token sequence instead:

- the first prompt is rendered and tokenised once per task (`ChatTokens.prompt`);
- every turn appends the sampled ids as the engine returned them, so what is trained on is
  exactly what was sampled, never a re-rendering of it;
- tool results are appended as the tokens the chat template would put there, cached per
  result text (`ChatTokens.after_turn`);
- the environment parses tool calls on the client (`Environment.parse_turn`);
- the G samples of a prompt are one request (``n=G``, one prefill) and, in throughput mode,
  each round of turns of all live episodes is one request.

Two modes. ``seeded``: every sequence has its own seed, so an episode's tokens do not depend
on what else the engine is batching (the exact-parity tests rely on it); vLLM's sampler runs
seeded requests through a per-request generator. ``throughput``: no seeds, one request per
round, vLLM's batched sampler; parity with serial runs is statistical.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp

from trainer.envs import sampler_http
from trainer.envs.base import AssistantTurn, Environment, Episode, Task, Trajectory
from trainer.envs.runner import DEFAULT_MAX_TOKENS, DEFAULT_MAX_TURNS, EpisodeState

RolloutMode = Literal["seeded", "throughput"]

_PROBE_ANSWER = "probe-answer-7f3a"
_PROBE = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _PROBE_ANSWER}]


class ChatTokens:
    """The chat template's token framing for one tokenizer, with its renderings cached."""

    def __init__(self, tokenizer: Any, tool_format: str = "hermes") -> None:
        self.tokenizer = tokenizer
        self.tool_format = tool_format
        """How sampled turns carry tool calls (vLLM's tool-parser name, `Environment.parse_turn`)."""
        self.end_of_turn: int = tokenizer.eos_token_id
        self._prompts: dict[tuple[str, str], list[int]] = {}
        self._after: dict[tuple[tuple[str, str], ...], list[int]] = {}
        eot = tokenizer.decode([self.end_of_turn])
        closed = self._render(_PROBE, generation=False)
        if eot not in closed:
            raise ValueError(
                f"the chat template does not end an assistant turn with {eot!r}, the "
                "tokenizer's end-of-sequence token: token-level rollouts cannot frame turns"
            )
        self._eot = eot

    def _render(
        self, messages: list[dict[str, Any]], *, generation: bool, tools: Any = None
    ) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=generation, tokenize=False
            )
        )

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, env: Environment, task: Task) -> list[int]:
        """The first prompt of an episode: system prompt, tools and the task, ready for the
        assistant's first turn."""
        key = (env.name, task.prompt)
        if key not in self._prompts:
            text = self._render(env.initial_messages(task), generation=True, tools=env.tools())
            self._prompts[key] = self.encode(text)
        return self._prompts[key]

    def conversation(self, messages: list[dict[str, Any]], tools: Any = None) -> list[int]:
        """A conversation's tokens, ready for the assistant's next turn."""
        return self.encode(self._render(messages, generation=True, tools=tools))

    def after_turn(self, results: Sequence[dict[str, Any]]) -> list[int]:
        """The tokens between a sampled turn's end-of-turn token and the next turn: the tool
        result messages ``results`` and the next assistant header.

        They are what the template writes after an assistant turn's end-of-turn token once the
        tools answer. How the template renders the assistant turn itself at that point does not
        matter: some rewrite it (Qwen3 puts a `<think>` block on the assistant turns after the
        last user message, Llama 3.1 dates the system header), but the episode keeps every
        turn as it was sampled, and the engine is given exactly those tokens."""
        key = tuple((str(m["role"]), str(m.get("content") or "")) for m in results)
        if key not in self._after:
            full = self._render([*_PROBE, *results], generation=True)
            answered = full.find(_PROBE_ANSWER)
            end = full.find(self._eot, answered) if answered >= 0 else -1
            if end < 0:
                raise ValueError(
                    "the chat template does not close an assistant turn with the tokenizer's "
                    "end-of-sequence token once a tool answers: token-level rollouts cannot "
                    "frame tool results"
                )
            self._after[key] = self.encode(full[end + len(self._eot) :])
        return self._after[key]

    def text(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))


@dataclass(frozen=True)
class Sample:
    """One sampled continuation: its token ids, their sampling logprobs, why it stopped."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str


class Sampler(Protocol):
    """Where token-level rollouts sample: `CompletionsEngine`, or an in-process engine."""

    async def sample(
        self,
        model: str,
        prompts: Sequence[Sequence[int]],
        *,
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int | None,
    ) -> list[list[Sample]]: ...


class CompletionsEngine:
    """Token-id prompts in, token ids and logprobs out, through ``POST /v1/completions``
    (any vLLM server: it takes a list of token-id prompts and returns ``token_ids`` with
    ``return_token_ids``). Connections follow the sampler's policy, as the gateway's do
    (`trainer.envs.sampler_http`): idle ones are dropped before the server closes them, and a
    request the server closed without answering is sent once more."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 600.0,
        idle_drop_s: float = sampler_http.IDLE_DROP_S,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/completions"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._idle_drop_s = idle_drop_s
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

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
        """``n`` samples of each prompt, in prompt order (``seed``: vLLM gives sample ``k``
        of a prompt the seed ``seed + k``)."""
        if self._session is None or self._session.closed:
            self._session = sampler_http.open_session(self._timeout, idle_drop_s=self._idle_drop_s)
        body: dict[str, Any] = {
            "model": model,
            "prompt": [list(p) for p in prompts],
            "n": n,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "logprobs": 0,
            "return_token_ids": True,
        }
        if seed is not None:
            body["seed"] = seed
        self.requests += 1
        response = await sampler_http.post(self._session, self.url, json.dumps(body).encode())
        try:
            raw = await response.read()
        finally:
            response.release()
        if response.status != 200:
            raise EngineRequestError(response.status, raw.decode(errors="replace")[:500])
        choices = json.loads(raw)["choices"]
        out: list[list[Sample]] = [[] for _ in prompts]
        for choice in sorted(choices, key=lambda c: c["index"]):
            ids = list(choice["token_ids"])
            logprobs = [float(x) for x in choice["logprobs"]["token_logprobs"]]
            out[choice["index"] // n].append(Sample(ids, logprobs, choice["finish_reason"]))
        return out

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class EngineRequestError(RuntimeError):
    """The engine refused a sampling request."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"engine answered {status}: {body}")
        self.status = status


class _Rollout:
    """One episode in flight: the turn state machine and its token sequence."""

    def __init__(self, env: Environment, task: Task, prompt: list[int], max_turns: int) -> None:
        self.state = EpisodeState(env, task, max_turns)
        self.ids = list(prompt)
        self.mask = [0.0] * len(prompt)
        self.logprobs = [0.0] * len(prompt)

    def take(self, sample: Sample, codec: ChatTokens, env: Environment) -> None:
        """Apply one sampled turn, then append the tool results' tokens if the episode goes on."""
        ids = sample.token_ids
        logprobs = sample.logprobs
        if len(logprobs) != len(ids):  # never train on tokens without their sampling logprob
            logprobs = (logprobs + [0.0] * len(ids))[: len(ids)]
        prompt = list(self.ids)
        content, calls = env.parse_turn(
            codec.text(ids), len(self.state.assistant_turns), codec.tool_format
        )
        ended = bool(ids) and ids[-1] == codec.end_of_turn
        finish = "length" if sample.finish_reason == "length" or not ended else None
        turn = AssistantTurn(
            prompt_token_ids=prompt,
            completion_token_ids=list(ids),
            logprobs=list(logprobs),
            finish_reason=finish or ("tool_calls" if calls else "stop"),
        )
        before = len(self.state.messages)
        self.state.record(content, calls, turn)
        self.ids.extend(ids)
        self.mask.extend([1.0] * len(ids))
        self.logprobs.extend(logprobs)
        if not self.state.done:
            results = self.state.messages[before + 1 :]
            context = codec.after_turn(results)
            self.ids.extend(context)
            self.mask.extend([0.0] * len(context))
            self.logprobs.extend([0.0] * len(context))

    def episode(self) -> Episode:
        episode = self.state.episode()
        last = max((i for i, m in enumerate(self.mask) if m), default=-1) + 1
        episode.trajectory = Trajectory(self.ids[:last], self.mask[:last], self.logprobs[:last])
        return episode


async def play(
    engine: Sampler,
    codec: ChatTokens,
    model: str,
    env: Environment,
    tasks: Sequence[Task],
    *,
    group_size: int = 1,
    temperature: float,
    mode: RolloutMode = "throughput",
    seed: int = 0,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> list[Episode]:
    """``group_size`` episodes of each task on ``model``, graded; task-major order (the G
    episodes of task 0, then of task 1, ...).

    Turns go in rounds: the first turn of all episodes, then the second turn of those still
    going, and so on. In ``throughput`` mode each round is one request. In ``seeded`` mode
    each task's first turn is one ``n=G`` request and each later turn its own request;
    episode ``j`` samples every turn with the seed ``seed + j``, as the chat runner
    (`trainer.envs.runner.run_episodes`) does, so both play the same episodes."""
    rollouts = [
        _Rollout(env, task, codec.prompt(env, task), max_turns)
        for task in tasks
        for _ in range(group_size)
    ]

    async def ask(prompts: list[list[int]], n: int, seeds: list[int] | None) -> list[list[Sample]]:
        """``n`` samples of each prompt: one request, or one per prompt when seeded."""
        if seeds is None:
            return await engine.sample(
                model, prompts, n=n, temperature=temperature, max_tokens=max_tokens, seed=None
            )
        answers = await asyncio.gather(
            *(
                engine.sample(
                    model, [p], n=n, temperature=temperature, max_tokens=max_tokens, seed=s
                )
                for p, s in zip(prompts, seeds, strict=True)
            )
        )
        return [a[0] for a in answers]

    seeded = mode == "seeded"
    first = await ask(
        [codec.prompt(env, t) for t in tasks],
        group_size,
        [seed + i * group_size for i in range(len(tasks))] if seeded else None,
    )
    for i, samples in enumerate(first):
        for k, sample in enumerate(samples):
            rollouts[i * group_size + k].take(sample, codec, env)
    while live := [(i, r) for i, r in enumerate(rollouts) if not r.state.done]:
        answers = await ask(
            [r.ids for _, r in live],
            1,
            [seed + i for i, _ in live] if seeded else None,
        )
        for (_, rollout), samples in zip(live, answers, strict=True):
            rollout.take(samples[0], codec, env)
    return [r.episode() for r in rollouts]
