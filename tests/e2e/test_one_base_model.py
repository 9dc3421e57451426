"""One base model for training across the whole stack: after an RL experiment started from
the API ran on `clora up`, the trainer service maps the base model's weights and neither the
gateway nor the Celery worker does (training there would load them through transformers,
which keeps the file mapped)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from app.runtime.processes import stack_memory
from tests.helpers.up import clora_up

pytestmark = pytest.mark.slow

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "clora-tiny"


def test_only_the_trainer_holds_the_base_model_after_an_experiment(tmp_path: Path) -> None:
    with clora_up(tmp_path) as up:
        deadline = time.monotonic() + 400
        password = re.search(r"@clora\.local / (\S+)", up.log.read_text())
        assert password, up.log.read_text()[-3000:]
        http = httpx.Client(base_url=up.base, timeout=60)
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
        held = {r.name: r for r in stack_memory(up.data_dir, WEIGHTS)}
        assert {"gateway", "worker", "trainer", "engine"} <= set(held), held
        assert held["trainer"].holds_base_weights  # the detection works where the model is
        assert not held["gateway"].holds_base_weights, held["gateway"]
        assert not held["worker"].holds_base_weights, held["worker"]
        ps = up.cli("ps")
        assert re.search(r"^worker .* no$", ps, re.M), ps
