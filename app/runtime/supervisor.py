"""Child processes of `clora up`: started in order, restarted when they die, stopped on exit."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


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
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

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

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass


class Supervisor:
    """Keeps every child running until asked to stop; stops them in reverse order."""

    def __init__(self, pid_file: Path, max_restarts: int = 5) -> None:
        self.children: list[Child] = []
        self.pid_file = pid_file
        self.max_restarts = max_restarts
        self._stopping = False

    def add(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        self._write_pids()
        return child

    def _write_pids(self) -> None:
        lines = [f"{c.name} {c.process.pid}" for c in self.children if c.process is not None]
        self.pid_file.write_text("\n".join(lines) + "\n")

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def run_forever(self, poll_s: float = 1.0) -> None:
        while not self._stopping:
            for child in self.children:
                if self._stopping or child.alive:
                    continue
                if child.restarts >= self.max_restarts:
                    log.error("%s died %d times; stopping clora", child.name, child.restarts)
                    self._stopping = True
                    break
                child.restarts += 1
                log.warning("%s exited; restarting (%d)", child.name, child.restarts)
                child.start()
                self._write_pids()
            time.sleep(poll_s)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.pid_file.unlink(missing_ok=True)
