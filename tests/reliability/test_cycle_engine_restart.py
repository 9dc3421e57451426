"""A learning cycle whose engine dies during evaluation waits for it, reloads both versions
and measures again; anything else that breaks evaluation still fails the cycle at once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.adapters import service as registry
from app.adapters.signals import EnvironmentSignal, Signals
from app.core.config import get_settings
from app.core.errors import EngineUnavailable
from app.cycles import runner
from app.cycles.schemas import PromotionRule
from app.cycles.stages import Candidate, CyclePlan, EvaluationPlan
from app.sampler.identity import IDENTITY_ADAPTER, write_identity_adapter
from app.sampler.launcher import EngineProcess, LoraSlots, free_port
from app.training.client import Examples, LoraShape, TrainingRequest
from tests.helpers.engine import MODEL_DIR, READY_TIMEOUT_S, SERVED_MODEL_NAME


def _cycle(engine_url: str, environment_tasks: int = 4) -> runner._Cycle:
    """A cycle with nothing to measure but ``environment_tasks`` calculator tasks."""
    plan = CyclePlan(
        tenant_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        agent_id=uuid.uuid4(),
        tenant_slug="t",
        agent_name="a",
        parent=None,
        training=TrainingRequest(LoraShape(8, 16, ("q_proj",)), None, Examples(), {}, 1, 1e-3),
        evaluation=EvaluationPlan(
            rule=PromotionRule(),
            environment="calculator",
            environment_tasks=environment_tasks,
        ),
        counts={},
    )
    return runner._Cycle(plan, get_settings(), engine_url)


def _candidate(path: str) -> Candidate:
    return Candidate(id=uuid.uuid4(), name="t/a@v1", path=path, label="a@v1")


@pytest.fixture
def engine_at(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Settings pointing at an engine on a port of this test's own (nothing listens yet)."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CLORA_ENGINE_URLS", json.dumps([url]))
    monkeypatch.setenv("CLORA_CYCLE_ENGINE_WAIT_S", "240")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.mark.slow
def test_engine_killed_during_evaluation_is_waited_for_and_measured_again(
    engine_at: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(engine_at.rsplit(":", 1)[1])

    def new_engine() -> EngineProcess:
        return EngineProcess(
            model_dir=MODEL_DIR,
            loras=LoraSlots(max_loras=2, max_lora_rank=16),
            port=port,
            served_model_name=SERVED_MODEL_NAME,
            log_path=tmp_path / "engine.log",
        )

    engines = [new_engine()]
    engines[0].start()
    engines[0].wait_ready(READY_TIMEOUT_S)
    settings = get_settings()
    cycle = _cycle(engine_at)
    candidate = write_identity_adapter(MODEL_DIR, tmp_path / "candidate")
    assert runner._load_parent(settings, cycle.plan) == IDENTITY_ADAPTER
    registry.load_into_engines(settings, "t/a@v1", str(candidate))
    real, calls = runner._measure, []
    restart: list[threading.Thread] = []

    def restarted() -> None:
        engines.append(new_engine())
        engines[-1].start()
        engines[-1].wait_ready(READY_TIMEOUT_S)

    def measure_then_kill(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 1:  # the engine dies as the evaluation starts
            pid = engines[0].pid
            assert pid is not None
            os.killpg(pid, signal.SIGKILL)
            engines[0].stop()
            restart.append(threading.Thread(target=restarted))
            restart[0].start()
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_measure", measure_then_kill)
    try:
        signals = runner._measure_until_done(cycle, IDENTITY_ADAPTER, _candidate(str(candidate)))
    finally:
        for thread in restart:
            thread.join()
        for engine in engines:
            engine.stop()
    assert len(calls) == 2
    # Measured on the new engine, after both versions were loaded into it again: the same
    # weights, so the same greedy reward.
    env = signals.environment
    assert env is not None and env.n == 4 and env.before == env.after


@pytest.fixture
def loads_succeed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a version into the engine succeeds without one."""
    monkeypatch.setattr(runner.registry, "load_into_engines", lambda *a, **k: None)


def _measure_stub(engine_url: str) -> object:
    """The retrying evaluation with placeholder versions (`_measure` is patched in these tests)."""
    return runner._measure_until_done(_cycle(engine_url), "p", _candidate("/x"))


def test_evaluation_failures_that_are_not_the_engine_fail_at_once(
    engine_at: str, monkeypatch: pytest.MonkeyPatch, loads_succeed: None
) -> None:
    calls: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise ValueError("a bad evaluation example")

    monkeypatch.setattr(runner, "_measure", broken)
    with pytest.raises(ValueError):
        _measure_stub(engine_at)
    assert calls == [1]


def test_an_engine_that_never_comes_back_fails_the_evaluation_after_the_wait(
    engine_at: str, monkeypatch: pytest.MonkeyPatch, loads_succeed: None
) -> None:
    monkeypatch.setenv("CLORA_CYCLE_ENGINE_WAIT_S", "1")
    get_settings.cache_clear()
    calls: list[int] = []

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise EngineUnavailable("engine unreachable during evaluation")

    monkeypatch.setattr(runner, "_measure", unreachable)
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="did not come back within 1 s"):
        _measure_stub(engine_at)
    assert calls == [1] and time.monotonic() - started < 30


def test_an_engine_down_as_the_candidate_is_published_is_waited_for(
    engine_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    waits: list[str] = []

    def load(settings: Any, name: str, path: str) -> None:
        loads.append(name)
        if len(loads) == 1:
            raise EngineUnavailable(f"engine {engine_at} unreachable: connection refused")

    monkeypatch.setattr(runner.registry, "load_into_engines", load)
    monkeypatch.setattr(runner, "_load_parent", lambda settings, plan: loads.append("parent"))
    monkeypatch.setattr(
        runner, "_wait_for_engine", lambda cycle, _s: waits.append(cycle.engine_url)
    )
    monkeypatch.setattr(runner, "_heartbeat", lambda *a, **k: None)
    measured = Signals(environment=EnvironmentSignal(n=1))
    monkeypatch.setattr(runner, "_measure", lambda *a, **k: measured)
    assert _measure_stub(engine_at) is measured
    # Not failed: it waited for the engine, then loaded the parent and the candidate again.
    assert waits == [engine_at] and loads == ["t/a@v1", "parent", "t/a@v1"]
