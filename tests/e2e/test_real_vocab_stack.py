"""`clora up` on a real-vocabulary base model (the Qwen3-shaped fixture, 151,936 tokens, random
weights): the stack serves chats with tools and streams through the openai client, a correction
and a cycle train a version on the trainer service at that vocabulary, and the version, loaded
into the engine at runtime when it goes live, serves the agent."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.helpers.engine import READY_TIMEOUT_S
from trainer.bundled.fixtures import make_real_vocab_model

pytestmark = pytest.mark.slow

CLORA = [sys.executable, "-m", "app.cli"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        },
    }
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*CLORA, *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.mark.timeout(1800)
def test_up_serves_and_learns_on_a_real_vocabulary(tmp_path: Path) -> None:
    model = make_real_vocab_model(tmp_path / "qwen3-vocab", "qwen3")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLORA_")}
    env.update(
        CLORA_DATA_DIR=str(tmp_path / "data"),
        CLORA_PORT=str(port),
        CLORA_ENGINE_PORT=str(_free_port()),
        CLORA_ENVIRONMENT="development",
        CLORA_BASE_MODEL_PATH=str(model),
    )
    up = subprocess.Popen(
        [*CLORA, "up", "--redis-port", str(_free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        lines: list[str] = []
        assert up.stdout is not None
        while not any(line.startswith("gateway") for line in lines):
            line = up.stdout.readline()
            assert line, "clora up exited early:\n" + "".join(lines)
            lines.append(line)
        key = re.search(r"API key\s+(\S+)", "".join(lines))
        assert key, "".join(lines)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).json().get("ready"):
                    break
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(1)
        else:
            pytest.fail("the stack never became ready")
        _run(env, "tenant", "agent", "demo", "plain")  # an agent without an environment
        client = OpenAI(base_url=f"{base}/v1", api_key=key.group(1), max_retries=0)
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
        fixed = httpx.post(
            f"{base}/v1/feedback",
            headers={"Authorization": f"Bearer {key.group(1)}"},
            json={
                "interaction_id": reply.id,
                "kind": "correction",
                "correction": {"content": "60"},
            },
            timeout=30,
        )
        assert fixed.status_code in (200, 201), fixed.text
        deadline = time.monotonic() + 120
        while "60" not in _run(env, "dataset", "export", "plain", "--tenant", "demo"):
            assert time.monotonic() < deadline, "the correction never became a training example"
            time.sleep(1)
        cycle = _run(env, "cycle", "run", "plain", "--tenant", "demo")
        print(cycle)
        assert "status needs_evaluation" in cycle or "status rejected" in cycle, cycle
        # Nothing to evaluate on (no environment, no held-out examples): promote with force.
        _run(env, "adapter", "promote", "plain", "1", "--force", "--tenant", "demo")
        again = client.chat.completions.create(
            model="plain",
            messages=ask,
            max_tokens=12,
            temperature=0,  # type: ignore[arg-type]
        )
        assert again.system_fingerprint == "demo/plain@v1", again.system_fingerprint
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=120)
