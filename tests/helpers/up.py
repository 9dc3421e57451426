"""`clora up` as a new user starts it, in a test: a fresh data dir, ports of its own, an optional
base model, the first API key read from its output; stopped with Ctrl-C at the end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from tests.helpers.engine import READY_TIMEOUT_S
from tests.helpers.gateway import free_port

CLORA = [sys.executable, "-m", "app.cli"]


@dataclass
class Up:
    """A running `clora up`: its gateway, its engine, its first API key and its settings."""

    base: str
    engine_url: str
    key: str
    env: dict[str, str]
    log: Path
    """What `clora up` printed (the banner: URLs, the API key, the admin's password)."""
    process: subprocess.Popen[str]

    @property
    def data_dir(self) -> Path:
        return Path(self.env["CLORA_DATA_DIR"])

    def cli(self, *args: str, timeout_s: float = 900) -> str:
        """Run a `clora` command against this stack's data dir; its output (it must succeed)."""
        done = subprocess.run(
            [*CLORA, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def client(self) -> OpenAI:
        return OpenAI(base_url=f"{self.base}/v1", api_key=self.key, max_retries=0)

    def correct(
        self, interaction_id: str, correction: dict[str, Any], agent: str, until: str
    ) -> None:
        """Correct an answer through `/v1/feedback`, then wait until ``agent``'s exported
        examples show ``until`` (a piece of the corrected message)."""
        made = httpx.post(
            f"{self.base}/v1/feedback",
            headers={"Authorization": f"Bearer {self.key}"},
            json={"interaction_id": interaction_id, "kind": "correction", "correction": correction},
            timeout=30,
        )
        assert made.status_code in (200, 201), made.text
        deadline = time.monotonic() + 120
        while until not in self.cli("dataset", "export", agent, "--tenant", "demo"):
            assert time.monotonic() < deadline, "the correction never became a training example"
            time.sleep(1)


@contextmanager
def clora_up(
    folder: Path, base_model: Path | None = None, *, engine: bool = True, key: str | None = None
) -> Iterator[Up]:
    """Start `clora up` on a fresh data dir under ``folder`` (on ``base_model`` when given) and
    wait until it is ready. Again on the data dir of an earlier start: pass the ``key`` that
    start printed (credentials are shown once); ``engine=False`` starts it without one."""
    port, engine_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLORA_")}
    env.update(
        CLORA_DATA_DIR=str(folder / "data"),
        CLORA_PORT=str(port),
        CLORA_ENGINE_PORT=str(engine_port),
        CLORA_ENVIRONMENT="development",
    )
    if base_model is not None:
        env["CLORA_BASE_MODEL_PATH"] = str(base_model)
    log = folder / ("up.log" if key is None else f"up-{time.monotonic_ns()}.log")
    argv = [*CLORA, "up", "--redis-port", str(free_port())] + ([] if engine else ["--no-engine"])
    with log.open("w") as out:  # a file, not a pipe: nobody reads a pipe while tests run
        up = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not re.search(r"^gateway", log.read_text(), re.M):
            assert up.poll() is None, "clora up exited early:\n" + log.read_text()
            assert time.monotonic() < deadline, "clora up printed no banner:\n" + log.read_text()
            time.sleep(0.5)
        printed = re.search(r"API key\s+(\S+)", log.read_text())
        key = key or (printed.group(1) if printed else None)
        assert key, log.read_text()
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).json().get("ready"):
                    break
            except (httpx.TransportError, ValueError):
                pass
            assert up.poll() is None, "clora up exited before it was ready:\n" + log.read_text()
            time.sleep(1)
        else:
            raise AssertionError("the stack never became ready")
        yield Up(base, f"http://127.0.0.1:{engine_port}", key, env, log, up)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=120)
