"""`clora up` on a real-vocabulary base model (the Qwen3-shaped fixture, 151,936 tokens, random
weights): the stack serves chats with tools and streams through the openai client, a correction
and a cycle train a version on the trainer service at that vocabulary, and the version, loaded
into the engine at runtime when it goes live, serves the agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.up import clora_up
from trainer.bundled.fixtures import make_real_vocab_model

pytestmark = pytest.mark.slow

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        },
    }
]


@pytest.mark.timeout(1800)
def test_up_serves_and_learns_on_a_real_vocabulary(tmp_path: Path) -> None:
    model = make_real_vocab_model(tmp_path / "qwen3-vocab", "qwen3")
    with clora_up(tmp_path, model) as up:
        up.cli("tenant", "agent", "demo", "plain")  # an agent without an environment
        client = up.client()
        ask = [{"role": "user", "content": "What is 12 times 5?"}]
        reply = client.chat.completions.create(
            model="plain",
            messages=ask,
            tools=TOOLS,
            max_tokens=12,
            temperature=0,  # type: ignore[arg-type]
        )
        assert reply.system_fingerprint == "plain@base" and reply.choices[0].finish_reason
        chunks = list(
            client.chat.completions.create(
                model="plain",
                messages=ask,
                max_tokens=8,
                temperature=0,
                stream=True,  # type: ignore[arg-type]
            )
        )
        assert chunks and chunks[-1].choices[0].finish_reason in ("length", "stop")
        up.correct(reply.id, {"content": "60"}, "plain", until="60")
        cycle = up.cli("cycle", "run", "plain", "--tenant", "demo")
        print(cycle)
        assert "status needs_evaluation" in cycle or "status rejected" in cycle, cycle
        # Nothing to evaluate on (no environment, no held-out examples): promote with force.
        up.cli("adapter", "promote", "plain", "1", "--force", "--tenant", "demo")
        again = client.chat.completions.create(
            model="plain",
            messages=ask,
            max_tokens=12,
            temperature=0,  # type: ignore[arg-type]
        )
        assert again.system_fingerprint == "demo/plain@v1", again.system_fingerprint
