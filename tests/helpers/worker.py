"""Pytest plugin: a real Celery worker process on the test database, Redis and engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.sampler.launcher import EngineProcess
from tests.helpers.engine import MODEL_DIR
from tests.helpers.gateway import Gateway


def worker_env(database_url: str, engine_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLORA_")}
    env.update(
        CLORA_DATABASE_URL=database_url,
        CLORA_REDIS_URL=os.environ["CLORA_REDIS_URL"],
        CLORA_ENGINE_URLS=json.dumps([engine_url]),
        CLORA_DATA_DIR=str(data_dir),
        CLORA_BASE_MODEL_PATH=str(MODEL_DIR),
        CLORA_ENVIRONMENT="development",
    )
    return env


def start_worker(
    env: dict[str, str], log: Path, queue: str | None = None, beat: Path | None = None
) -> subprocess.Popen[bytes]:
    """A Celery worker process, returned once ready; with ``beat`` (its schedule file) it also
    runs beat, as `clora up`'s worker does (the feedback sweep and the cycle reaper)."""
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "app.runtime.worker",
        "worker",
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    if queue:
        cmd += ["--queues", queue]
    if beat is not None:
        cmd += ["--beat", "--schedule", str(beat)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "ready." in log.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.3)
    raise RuntimeError("celery worker did not start:\n" + log.read_text())


def start_trainer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A trainer service process (`python -m app.training`), returned once it is warm."""
    cmd = [sys.executable, "-m", "app.training"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    seen = log.read_text(errors="replace").count(" ready (base ")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count(" ready (base ") > seen:
            return proc
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.3)
    raise RuntimeError("trainer service did not start:\n" + log.read_text())


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def trainer_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """The session's trainer service (learning cycles train through it; it needs no engine)."""
    from app.core.config import get_settings

    log = tmp_path_factory.mktemp("trainer") / "trainer.log"
    env = worker_env(database_url, "http://127.0.0.1:9", get_settings().data_dir)
    env["CLORA_TRAINER_ID"] = "session-trainer"
    proc = start_trainer(env, log)
    yield proc
    stop(proc)


@pytest.fixture(scope="session")
def worker(
    database_url: str,
    engine: EngineProcess,
    gateway: Gateway,
    trainer_service: subprocess.Popen[bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[subprocess.Popen[bytes]]:
    from app.core.config import get_settings

    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = worker_env(database_url, engine.url, get_settings().data_dir)
    proc = start_worker(env, log)
    yield proc
    stop(proc)


def wait_for(predicate, timeout_s: float = 120, interval_s: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError("condition not met in time")
