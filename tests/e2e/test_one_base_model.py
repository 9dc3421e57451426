"""One base model for training across the whole stack: after an RL experiment started from
the API ran on `clora up`, the trainer service maps the base model's weights and neither the
gateway nor the Celery worker does (training there would load them through transformers,
which keeps the file mapped)."""

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

from app.runtime.processes import stack_memory

pytestmark = pytest.mark.slow

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "clora-tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_only_the_trainer_holds_the_base_model_after_an_experiment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLORA_")}
    # Every port of its own (the engine's default 8100 is taken by any other stack running).
    env.update(
        CLORA_DATA_DIR=str(data),
        CLORA_PORT=str(port),
        CLORA_ENGINE_PORT=str(_free_port()),
        CLORA_ENVIRONMENT="development",
    )
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up", "--redis-port", str(_free_port())],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        password = re.search(r"@clora\.local / (\S+)", log.read_text())
        assert password, log.read_text()[-3000:]
        http = httpx.Client(base_url=base, timeout=60)
        login = {"email": "admin@clora.local", "password": password.group(1)}
        http.post("/api/auth/login", json=login).raise_for_status()
        http.headers["x-csrf-token"] = http.cookies.get("clora_csrf") or ""
        http.headers["x-clora-tenant"] = "demo"
        body = {"agent": "calculator", "steps": 2, "prompts_per_step": 4, "group_size": 4}
        created = http.post("/api/experiments", json=body)
        assert created.status_code == 202, created.text
        experiment = created.json()
        while experiment["status"] in ("queued", "running") and time.monotonic() < deadline + 300:
            time.sleep(2)
            experiment = http.get(f"/api/experiments/{experiment['id']}").json()
        assert experiment["status"] == "succeeded", experiment
        assert len(experiment["steps"]) == 2

        held = {r.name: r for r in stack_memory(data, WEIGHTS)}
        assert {"gateway", "worker", "trainer", "engine"} <= set(held), held
        assert held["trainer"].holds_base_weights  # the detection works where the model is
        assert not held["gateway"].holds_base_weights, held["gateway"]
        assert not held["worker"].holds_base_weights, held["worker"]
        ps = subprocess.run(
            [sys.executable, "-m", "app.cli", "ps"], env=env, capture_output=True, text=True
        )
        assert ps.returncode == 0 and re.search(r"^worker .* no$", ps.stdout, re.M), ps.stdout
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
