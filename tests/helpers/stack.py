"""A private stack for the tests that kill processes or run long: its own database, Redis,
gateway process, Celery worker with beat and trainer service, on the session's engine. No
other process of the session takes its work, and killing one of its processes disturbs no
other test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

from celery import Celery
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.db import normalise_url
from app.models import CycleRun
from app.runtime import migrate
from app.runtime.embedded import EmbeddedRedis
from tests.helpers.database import create_database, drop_database
from tests.helpers.faults import gateway_env
from tests.helpers.gateway import free_port, start_gateway_process
from tests.helpers.worker import start_trainer, start_worker, stop

PROCESSES = ("gateway", "worker", "trainer")


@dataclass
class Stack:
    """The private stack: its database, Redis, settings, and one process of each kind."""

    url: str
    sessions: sessionmaker[Session]
    redis: EmbeddedRedis
    env: dict[str, str]
    folder: Path
    port: int
    procs: dict[str, Popen[bytes]] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, name: str) -> None:
        """Start (or start again) the gateway, the worker (with beat) or the trainer."""
        log = self.folder / f"{name}.log"
        if name == "gateway":
            self.procs[name] = start_gateway_process(self.env, self.port, log)
        elif name == "worker":
            self.procs[name] = start_worker(self.env, log, beat=self.folder / "beat-schedule")
        else:
            self.procs[name] = start_trainer(self.env, log)

    def start_cycle(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> uuid.UUID:
        """Queue a learning cycle on this stack's worker; returns the run's id."""
        run_id = uuid.uuid4()
        with self.sessions.begin() as session:
            run = CycleRun(id=run_id, tenant_id=tenant_id, agent_id=agent_id, trigger="manual")
            session.add(run)
        Celery(broker=self.env["CLORA_REDIS_URL"]).send_task(
            "cycle.run", args=[str(tenant_id), str(run_id)], queue="clora"
        )
        return run_id

    def settings(self) -> Settings:
        """The stack's settings (its data dir, engine, database), as its processes read them."""
        fields = {
            key.removeprefix("CLORA_").lower(): json.loads(value) if value[:1] in "[{" else value
            for key, value in self.env.items()
            if key.startswith("CLORA_")
        }
        return Settings(**fields)

    def one(self, query: Any) -> Any:
        with self.sessions() as session:
            return session.scalar(query)

    def all(self, query: Any) -> list[Any]:
        with self.sessions() as session:
            return list(session.scalars(query))

    def run(self, run_id: uuid.UUID) -> CycleRun:
        return self.one(select(CycleRun).where(CycleRun.id == run_id))  # type: ignore[no-any-return]


@contextmanager
def private_stack(engine_url: str, folder: Path, **env: str) -> Iterator[Stack]:
    """Start the stack (``env``: extra CLORA_ settings for every process); stop and drop it."""
    url = create_database()
    migrate.upgrade(url)
    db = create_engine(normalise_url(url))
    redis = EmbeddedRedis(folder / "redis", free_port())
    settings = gateway_env(url, redis.start(), engine_url, folder / "data")
    settings.update(env)
    stack = Stack(
        url, sessionmaker(bind=db, expire_on_commit=False), redis, settings, folder, free_port()
    )
    try:
        for name in PROCESSES:
            stack.start(name)
        yield stack
    finally:
        for proc in stack.procs.values():
            stop(proc)
        redis.stop()
        db.dispose()
        drop_database(url)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def _own_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        return next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (from /proc)."""
    return sum(_own_kib(p) for p in [pid, *descendants(pid)]) / 1024


def postgres_rss_mib() -> float:
    """Resident memory of every PostgreSQL server process on this machine, in MiB (the test
    server serves every database of the session; shared buffers count in each process that
    touched them, so this is an upper bound)."""
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == "postgres":
                total += _own_kib(int(proc.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024
