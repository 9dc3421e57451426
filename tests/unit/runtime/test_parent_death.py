"""Children of `clora up` die with it, but never because the thread that started them ended."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from app.runtime.supervisor import die_with_parent, tie_to_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux")


def _start_on_worker_thread(preexec: object) -> subprocess.Popen[bytes]:
    """Fork `sleep` on a short-lived thread (as asyncio.to_thread does) and let it end."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn() -> None:
        chosen = tie_to_parent() if preexec is None else preexec
        started.append(subprocess.Popen(["sleep", "30"], preexec_fn=chosen))  # type: ignore[arg-type]

    worker = threading.Thread(target=spawn)
    worker.start()
    worker.join()
    return started[0]


def _alive_after(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    time.sleep(seconds)
    alive = proc.poll() is None
    proc.kill()
    proc.wait(5)
    return alive


def test_a_child_forked_on_a_worker_thread_outlives_that_thread() -> None:
    assert _alive_after(_start_on_worker_thread(None), 0.5)


def test_the_raw_death_signal_would_have_killed_it() -> None:
    """Why tie_to_parent checks the thread: PDEATHSIG follows the forking thread."""
    assert not _alive_after(_start_on_worker_thread(die_with_parent), 0.5)


def test_a_child_forked_on_the_main_thread_is_tied() -> None:
    assert tie_to_parent() is die_with_parent
