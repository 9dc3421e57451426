"""Token-level rollouts against the real engine: the same episodes as the chat path when
seeded, fewer requests, and prefix caching that actually shares prompts."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from app.sampler.launcher import EngineProcess
from trainer.envs import CalculatorEnvironment
from trainer.envs.runner import run_episodes
from trainer.envs.tokens import ChatTokens, CompletionsEngine, play

pytestmark = pytest.mark.slow

ENV = CalculatorEnvironment()


def test_seeded_token_rollouts_play_the_chat_path_episodes(
    engine: EngineProcess, bundled_model_dir: Path
) -> None:
    """Same seeds, chat messages vs token ids: the same samples, tools, rewards and finishes;
    each turn's prompt is what the server rendered from the chat history."""
    codec = ChatTokens(AutoTokenizer.from_pretrained(bundled_model_dir, local_files_only=True))
    # Hard tasks at temperature 1: calculator calls, so most episodes take several turns.
    tasks = [t for t in ENV.tasks("train", 200, seed=9) if t.difficulty == 3][:6]
    group = 3

    async def both() -> tuple[list, list, int]:
        client = openai.AsyncOpenAI(base_url=engine.api_base, api_key="unused")
        sampler = CompletionsEngine(engine.url)
        try:
            chat = await run_episodes(
                client,
                engine.served_model_name,
                ENV,
                [t for t in tasks for _ in range(group)],
                temperature=1.0,
                seed=500,
            )
            tokens = await play(
                sampler,
                codec,
                engine.served_model_name,
                ENV,
                tasks,
                group_size=group,
                temperature=1.0,
                mode="seeded",
                seed=500,
            )
            return chat, tokens, sampler.requests
        finally:
            await client.close()
            await sampler.close()

    chat, tokens, requests = asyncio.run(both())
    assert any(e.turns > 1 for e in chat), "no multi-turn episode: the test would show little"
    for a, b in zip(chat, tokens, strict=True):
        assert (a.reward, a.finish_reason, a.turns) == (b.reward, b.finish_reason, b.turns)
        assert _without_call_ids(a.messages) == _without_call_ids(b.messages)
        for x, y in zip(a.assistant_turns, b.assistant_turns, strict=True):
            assert x.completion_token_ids == y.completion_token_ids
            assert x.prompt_token_ids == y.prompt_token_ids
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)
    # One n=G request per task, then one per live episode per later turn; the chat path sends
    # one request per turn of every episode.
    assert requests == len(tasks) + sum(e.turns - 1 for e in tokens)


def _without_call_ids(messages: list[dict]) -> list[dict]:
    """The conversation without tool-call ids (the server makes up its own)."""
    out = []
    for m in messages:
        m = {k: v for k, v in m.items() if k != "tool_call_id"}
        if m.get("tool_calls"):
            m["tool_calls"] = [{k: v for k, v in c.items() if k != "id"} for c in m["tool_calls"]]
        out.append(m)
    return out


def test_throughput_mode_sends_one_request_per_round_and_shares_prefixes(
    engine: EngineProcess, bundled_model_dir: Path
) -> None:
    codec = ChatTokens(AutoTokenizer.from_pretrained(bundled_model_dir, local_files_only=True))
    tasks = ENV.tasks("train", 8, seed=21)

    def hits() -> float:
        text = httpx.get(f"{engine.url}/metrics").text
        found = re.findall(r"^vllm:prefix_cache_hits_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        return sum(float(x) for x in found)

    before = hits()

    async def go() -> tuple[list, int]:
        sampler = CompletionsEngine(engine.url)
        try:
            episodes = await play(
                sampler, codec, engine.served_model_name, ENV, tasks, group_size=4, temperature=1.0
            )
            return episodes, sampler.requests
        finally:
            await sampler.close()

    episodes, requests = asyncio.run(go())
    assert len(episodes) == 32 and all(e.trajectory is not None for e in episodes)
    assert requests == max(e.turns for e in episodes)
    # The engine's KV blocks (32 tokens, `EngineProcess.block_size`) are small enough that
    # the shared system prompt and the G samples' common prompt come from the prefix cache.
    assert hits() - before >= 32 * len(episodes)
