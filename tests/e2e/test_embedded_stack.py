"""`clora up` on the embedded default: real Postgres and Redis from wheels, rows survive restarts."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.sampler.launcher import free_port
from tests.helpers.engine import READY_TIMEOUT_S

pytestmark = pytest.mark.slow

CLORA = [sys.executable, "-m", "app.cli"]


def _env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLORA_")}
    env.update(CLORA_DATA_DIR=str(data_dir), CLORA_PORT=str(port), CLORA_ENVIRONMENT="development")
    return env


def _start(data_dir: Path, port: int, redis_port: int) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [*CLORA, "up", "--no-engine", "--redis-port", str(redis_port)],
        env=_env(data_dir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    # The bound every cold start in the suite has (`READY_TIMEOUT_S`): the wait ends as soon as
    # the stack answers; a fixed two minutes was a quiet machine's figure.
    deadline = time.monotonic() + READY_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail("clora up exited early:\n" + "".join(lines))
        lines.append(line)
        if line.startswith("gateway"):
            break
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, lines
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail("gateway never answered /healthz")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return out


def _owned_pids(data_dir: Path) -> list[int]:
    """Every process whose command line points into this data dir, plus recorded children."""
    pids = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(data_dir) in cmd:
            pids.append(p.pid)
    return pids


def test_up_persists_rows_and_stops_children(tmp_path: Path) -> None:
    data_dir = tmp_path / "clora-data"
    port, redis_port = free_port(), free_port()

    proc, lines = _start(data_dir, port, redis_port)
    output = "".join(lines)
    key = re.search(r"API key\s+(\S+)", output)
    assert key, output
    api_key = key.group(1)
    children = [
        int(line.split()[1]) for line in (data_dir / "children.pid").read_text().split("\n") if line
    ]
    assert children and _owned_pids(data_dir)
    # The gateway runs with two malloc arenas (GATEWAY_ENV); the other children as started.
    named = dict(line.split() for line in (data_dir / "children.pid").read_text().splitlines())
    environ = Path(f"/proc/{named['gateway']}/environ").read_bytes().split(b"\0")
    arenas = os.environ.get("MALLOC_ARENA_MAX", "2")  # the caller's setting wins
    assert f"MALLOC_ARENA_MAX={arenas}".encode() in environ
    worker = Path(f"/proc/{named['worker']}/environ").read_bytes().split(b"\0")
    assert (b"MALLOC_ARENA_MAX=2" in worker) == (os.environ.get("MALLOC_ARENA_MAX") == "2")
    created = subprocess.run(
        [*CLORA, "tenant", "create", "acme"],
        env=_env(data_dir, port),
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    _stop(proc)

    assert all(not psutil.pid_exists(pid) for pid in children)
    assert _owned_pids(data_dir) == []
    assert not (data_dir / "runtime.env").exists()

    proc, lines = _start(data_dir, port, redis_port)
    try:
        assert "existing data kept" in "".join(lines)
        models = httpx.get(
            f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {api_key}"}
        )
        assert models.status_code == 200
        assert [m["id"] for m in models.json()["data"]] == ["calculator"]
        again = subprocess.run(
            [*CLORA, "tenant", "create", "acme"],
            env=_env(data_dir, port),
            capture_output=True,
            text=True,
        )
        assert again.returncode != 0 and "already exists" in again.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["ready"] is True
    finally:
        _stop(proc)
    assert _owned_pids(data_dir) == []


def test_kill_9_of_up_takes_its_children_down_and_a_taken_port_is_named(tmp_path: Path) -> None:
    """kill -9 of `clora up` leaves no orphan serving (each child is told to stop when its
    parent dies); `clora up` on a port still taken says so instead of dying five times."""
    data_dir = tmp_path / "clora-data"
    port, redis_port = free_port(), free_port()
    proc, _ = _start(data_dir, port, redis_port)
    children = [
        int(line.split()[1]) for line in (data_dir / "children.pid").read_text().split("\n") if line
    ]
    proc.kill()
    proc.wait(10)
    try:
        _assert_children_stop(children, port)
    finally:  # the embedded Postgres is pgserver's daemon, not a child: it outlives clora up
        for pid in _owned_pids(data_dir):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        second = subprocess.run(
            [*CLORA, "up", "--no-engine", "--redis-port", str(free_port())],
            env=_env(tmp_path / "other", port),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert second.returncode != 0
    assert f"port {port}" in second.stderr and "in use" in second.stderr, second.stderr
    # The process holding it is named (here this test's own socket), and what to do.
    assert f"pid {os.getpid()}" in second.stderr and f"kill {os.getpid()}" in second.stderr


def test_children_of_an_earlier_up_still_running_are_named_before_anything_starts(
    tmp_path: Path,
) -> None:
    """A child of an earlier `clora up` on this data dir that outlived it (listed in its
    children.pid, started before the list was written) stops a new `clora up` at once, named
    with its pid and what to do; a listed pid that is no longer running does not."""
    data_dir = tmp_path / "clora-data"
    data_dir.mkdir()
    orphan = subprocess.Popen(["sleep", "120"])
    try:
        gone = subprocess.Popen(["true"])
        gone.wait()
        (data_dir / "children.pid").write_text(f"worker {gone.pid}\ngateway {orphan.pid}\n")
        second = subprocess.run(
            [*CLORA, "up", "--no-engine", "--redis-port", str(free_port())],
            env=_env(data_dir, free_port()),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        orphan.kill()
        orphan.wait()
    assert second.returncode != 0
    assert f"gateway (pid {orphan.pid})" in second.stderr, second.stderr
    assert f"kill {orphan.pid}" in second.stderr and f"pid {gone.pid}" not in second.stderr
    assert not (data_dir / "postgres").exists()  # nothing was started


def _assert_children_stop(children: list[int], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(psutil.pid_exists(pid) for pid in children):
        time.sleep(0.5)
    assert not any(psutil.pid_exists(pid) for pid in children)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_taken_engine_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    """A second `clora up` whose engine port is taken (by the first stack's engine, say) stops
    at once and names the setting, instead of serving from the other stack's engine."""
    engine_port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", engine_port))
        squatter.listen()
        env = {**_env(tmp_path / "second", free_port()), "CLORA_ENGINE_PORT": str(engine_port)}
        second = subprocess.run(
            [*CLORA, "up", "--redis-port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert second.returncode != 0
    assert f"port {engine_port}" in second.stderr, second.stderr
    assert "CLORA_ENGINE_PORT" in second.stderr, second.stderr
    assert not (tmp_path / "second" / "postgres").exists()  # nothing was started
