"""Child processes of `clora up`: started in order, restarted when they die (with exponential
backoff and jitter), stopped on exit.

A child that dies is started again after 1, 2, 4, ... seconds (at most `BACKOFF_CAP_S`, each
delay varied by up to a quarter either way, so that children that died together do not come
back together). Its count of restarts goes back to zero once it has run for `STABLE_S`: only
crashes in a row stop the stack, never crashes spread over its lifetime. When a child has died
`max_restarts` times in a row, the supervisor stops everything and says which child, how often,
and the last lines of its log."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
BACKOFF_JITTER = 0.25
STABLE_S = 300.0
"""A child that has run this long since its last start has its restart count reset."""
LOG_TAIL_LINES = 20


def die_with_parent() -> None:
    """In a child between fork and exec: ask Linux to send it SIGTERM when its parent dies
    (prctl PR_SET_PDEATHSIG); a no-op elsewhere."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def tie_to_parent() -> Callable[[], None] | None:
    """The ``preexec_fn`` that ties a child to this process, where that is safe.

    Linux sends the death signal when the *thread* that forked the child exits, not the
    process: a child forked on a worker thread (``asyncio.to_thread``, a thread pool) would be
    stopped as soon as that thread ends. Only children forked on the main thread are tied."""
    return die_with_parent if threading.current_thread() is threading.main_thread() else None


@dataclass
class Child:
    """One supervised process and how to start it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    restarts: int = 0
    """Restarts in a row (reset once the child has run for `STABLE_S`)."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0
    restart_at: float | None = None
    """When a dead child is due to start again (None: it is running, or not yet seen dead)."""

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        # Own process group, so that stopping it also stops whatever it forked; and told to
        # stop when `clora up` dies, even by kill -9, so no orphan keeps the ports.
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=tie_to_parent(),
        )
        out.close()
        self.started_at = time.monotonic()
        self.restart_at = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the child's log (what it said before it died)."""
        try:
            text = self.log_path.read_bytes()[-64_000:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the child's process group; SIGKILL to what is left of it after
        ``grace_s``. Returns once the whole group is gone, not only its leader (a Celery
        worker's pool processes outlive their parent by a moment)."""
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        if not _group_gone(self.process, group, deadline):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            _group_gone(self.process, group, time.monotonic() + 5)


def _group_gone(leader: subprocess.Popen[bytes], group: int, deadline: float) -> bool:
    """Wait until no process of ``group`` is left (reaping the leader), up to ``deadline``."""
    while True:
        leader.poll()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class Supervisor:
    """Keeps every child running until asked to stop; stops them in reverse order."""

    def __init__(
        self,
        pid_file: Path,
        max_restarts: int = 5,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children: list[Child] = []
        self.pid_file = pid_file
        self.max_restarts = max_restarts
        self.rng = rng or random.Random()
        self.clock = clock
        self.failure: str | None = None
        """Why the supervisor gave up (a child that kept dying), for `clora up` to print."""
        self._stopping = False

    def add(self, child: Child) -> Child:
        child.start()
        child.started_at = self.clock()
        self.children.append(child)
        self._write_pids()
        return child

    def _write_pids(self) -> None:
        lines = [f"{c.name} {c.process.pid}" for c in self.children if c.process is not None]
        self.pid_file.write_text("\n".join(lines) + "\n")

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def backoff_s(self, restarts: int) -> float:
        """The wait before restart number ``restarts`` (from 1): doubling from
        `BACKOFF_BASE_S` up to `BACKOFF_CAP_S`, varied by up to `BACKOFF_JITTER` either way."""
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (restarts - 1))
        return delay * (1 + self.rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER))

    def check(self) -> None:
        """One look at every child: reset the count of one that has been stable, schedule a
        dead one's restart, start one whose wait is over, or give up on one that keeps dying."""
        now = self.clock()
        for child in self.children:
            if self._stopping:
                return
            if child.alive:
                if child.restarts and now - child.started_at >= STABLE_S:
                    log.info("%s stable for %.0f s; restart count reset", child.name, STABLE_S)
                    child.restarts = 0
                continue
            if child.restart_at is None:
                if child.restarts >= self.max_restarts:
                    self.failure = (
                        f"{child.name} died {child.restarts + 1} times in a row "
                        f"(exit code {child.process.returncode if child.process else None}); "
                        f"stopping clora. The last lines of {child.log_path}:\n"
                        f"{child.log_tail()}"
                    )
                    log.error("%s", self.failure)
                    self._stopping = True
                    return
                child.restarts += 1
                wait = self.backoff_s(child.restarts)
                child.restart_at = now + wait
                log.warning(
                    "%s exited (code %s); restart %d in %.1f s",
                    child.name,
                    child.process.returncode if child.process else None,
                    child.restarts,
                    wait,
                )
            elif now >= child.restart_at:
                child.start()
                child.started_at = now
                self._write_pids()

    def run_forever(self, poll_s: float = 0.5) -> None:
        while not self._stopping:
            self.check()
            time.sleep(poll_s)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.pid_file.unlink(missing_ok=True)
