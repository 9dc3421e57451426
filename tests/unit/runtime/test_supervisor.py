"""`clora up`'s supervisor heals: a dead child comes back after a doubling, jittered wait; a
child that has been stable has its count reset; one that keeps dying stops the stack with a
message naming it and its last log lines. Real child processes, a clock the test moves."""

from __future__ import annotations

import random
from pathlib import Path

from app.runtime import supervisor as sup
from app.runtime.supervisor import Child, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _dead(child: Child) -> None:
    assert child.process is not None
    child.process.wait(10)


def _crashing(tmp_path: Path) -> Child:
    argv = ["sh", "-c", "echo starting; echo 'fatal: no such model' >&2; exit 3"]
    return Child("engine", argv, {}, tmp_path / "engine.log")


def test_a_dead_child_restarts_after_a_doubling_jittered_wait(tmp_path: Path) -> None:
    clock = Clock()
    supervisor = Supervisor(tmp_path / "pids", max_restarts=10, rng=random.Random(1), clock=clock)
    child = supervisor.add(_crashing(tmp_path))
    waits = []
    for _ in range(8):
        _dead(child)
        supervisor.check()  # seen dead: its restart is scheduled
        assert child.restart_at is not None
        waits.append(child.restart_at - clock.now)
        first_pid = child.process.pid if child.process else None
        clock.now = child.restart_at - 0.01
        supervisor.check()  # not yet
        assert child.process is not None and child.process.pid == first_pid
        clock.now = child.restart_at
        supervisor.check()  # started again
        assert child.process.pid != first_pid
    print(waits)
    for k, wait in enumerate(waits, start=1):
        nominal = min(sup.BACKOFF_CAP_S, sup.BACKOFF_BASE_S * 2 ** (k - 1))
        assert nominal * 0.75 <= wait <= nominal * 1.25, (k, wait)
    assert waits[5] > 20 and max(waits) <= sup.BACKOFF_CAP_S * 1.25
    assert len({round(w / min(60, 2**k), 3) for k, w in enumerate(waits)}) > 1  # jittered
    supervisor.stop_all()


def test_a_stable_child_has_its_count_reset_and_a_crash_loop_stops_with_a_reason(
    tmp_path: Path,
) -> None:
    clock = Clock()
    supervisor = Supervisor(tmp_path / "pids", max_restarts=2, rng=random.Random(2), clock=clock)
    steady = supervisor.add(Child("worker", ["sleep", "30"], {}, tmp_path / "worker.log"))
    steady.restarts = 2
    clock.now += sup.STABLE_S - 1
    supervisor.check()
    assert steady.restarts == 2
    clock.now += 1
    supervisor.check()
    assert steady.restarts == 0  # crashes spread over a lifetime never add up
    crashing = supervisor.add(_crashing(tmp_path))
    for _ in range(2):
        _dead(crashing)
        supervisor.check()
        assert crashing.restart_at is not None
        clock.now = crashing.restart_at
        supervisor.check()
    _dead(crashing)
    supervisor.check()
    assert supervisor.stopping and supervisor.failure is not None
    assert supervisor.failure.startswith("engine died 3 times in a row (exit code 3)")
    assert "fatal: no such model" in supervisor.failure
    supervisor.stop_all()
    assert not steady.alive


def test_a_child_that_will_not_stop_is_killed_at_the_deadline_with_what_it_forked(
    tmp_path: Path,
) -> None:
    """Warm shutdown has a deadline: a Celery worker finishing a long cycle (here a child that
    ignores SIGTERM, as a busy worker's pool does, and has forked a process of its own) gets
    `grace_s`, then its whole process group is killed; `stop` returns once none of it is left."""
    import signal
    import time

    import psutil

    marker = tmp_path / "grandchild.pid"
    script = f"trap '' TERM; sh -c 'trap \"\" TERM; echo $$ > {marker}; sleep 60' & sleep 60"
    child = Child("worker", ["sh", "-c", script], {}, tmp_path / "worker.log")
    child.start()
    deadline = time.monotonic() + 10
    while not (marker.is_file() and marker.read_text().strip()):
        assert time.monotonic() < deadline, "the grandchild never started"
        time.sleep(0.05)
    grandchild = psutil.Process(int(marker.read_text()))
    started = time.monotonic()
    child.stop(grace_s=1.0)
    took = time.monotonic() - started
    assert child.process is not None and child.process.returncode == -signal.SIGKILL
    gone_by = time.monotonic() + 5  # reaped by whoever inherited it
    while grandchild.is_running() and grandchild.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < gone_by, "the worker's own child outlived the deadline"
        time.sleep(0.05)
    assert 1.0 <= took < 6, took  # the grace, then the kill (5 s at most for the group to go)
