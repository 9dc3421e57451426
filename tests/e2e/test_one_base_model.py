"""One base model for training across the whole stack: after an RL experiment started from
the API ran on `clora up`, the trainer service maps the base model's weights and neither the
gateway nor the Celery worker does (training there would load them through transformers,
which keeps the file mapped). Then the same stack is killed with -9 and started again on its
data dir: every answer it gave before is in the log (one stack start for both, to keep the
suite's time)."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.runtime.processes import stack_memory
from tests.helpers.up import clora_up

pytestmark = pytest.mark.slow

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "clora-tiny"


def test_only_the_trainer_holds_the_base_model_after_an_experiment_and_a_kill_loses_nothing(
    tmp_path: Path,
) -> None:
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

        # kill -9 of `clora up` with the engine on, right after its last answer: its children
        # go with it (the engine and the embedded Redis included; the embedded Postgres is
        # pgserver's server, which outlives it and the next `clora up` attaches to), and a new
        # `clora up` on the same data dir finds every answer given before.
        client = up.client()
        served = [
            client.chat.completions.create(
                model="calculator",
                messages=[{"role": "user", "content": f"before the kill {i}"}],
                max_tokens=4,
            ).id
            for i in range(6)
        ]
        stack = [
            psutil.Process(int(line.split()[1]))
            for line in (up.data_dir / "children.pid").read_text().splitlines()
            if line
        ] + _redis_of(up.data_dir)
        up.process.kill()
        up.process.wait(10)
        try:
            gone_by = time.monotonic() + 60  # as test_embedded_stack waits for them
            while not all(_gone(p) for p in stack):
                assert time.monotonic() < gone_by, (
                    f"lived on: {[p.pid for p in stack if not _gone(p)]}"
                )
                time.sleep(0.2)
        except BaseException:
            _kill_all_of(up.data_dir)  # Postgres and whatever lived on: not left to the session
            raise
    with clora_up(tmp_path, engine=False, key=up.key) as again:
        http = httpx.Client(base_url=again.base, timeout=60)
        http.post("/api/auth/login", json=login).raise_for_status()
        http.headers["x-clora-tenant"] = "demo"
        found_by = time.monotonic() + 60
        missing = served
        while missing and time.monotonic() < found_by:
            missing = [i for i in served if http.get(f"/api/interactions/{i}").status_code != 200]
            time.sleep(0.5)
        assert missing == [], f"{len(missing)} of {len(served)} answers given before the kill lost"
        logged = http.get(f"/api/interactions/{served[-1]}").json()
        assert "before the kill 5" in str(logged["request"]), logged


def _redis_of(data_dir: Path) -> list[psutil.Process]:
    """The embedded Redis of the stack on ``data_dir`` (not a supervised child)."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if "redis-server" in " ".join(p.info["cmdline"] or [])
        and str(data_dir) in " ".join(p.info["cmdline"] or [])
    ]


def _gone(process: psutil.Process) -> bool:
    """Exited (a zombie not yet reaped by whoever inherited it counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill_all_of(data_dir: Path) -> None:
    for p in psutil.process_iter(["cmdline"]):
        if str(data_dir) in " ".join(p.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                p.kill()
