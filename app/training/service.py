"""The trainer service: one long-lived process, one warm base model, a durable job queue.

`clora trainer` (started by `clora up`; its own container in docker-compose.yml) claims
training jobs from Postgres (`app.training.queue`) and runs them on its `TrainingEngine`.
Every step of a job is made crash-safe in this order:

1. forward/backward and the optimiser step, with step id ``<job>:<n>``;
2. the step row (metrics) is committed to Postgres;
3. the adapter's full state (weights, fp32 master, AdamW moments, step id) is checkpointed
   atomically under ``<data_dir>/trainer/jobs/<job>/``.

After a kill -9 the job is claimed again, the checkpoint is loaded, and training resumes at
the step after the checkpoint's step id. A step whose row landed but whose checkpoint did not
is recomputed from the previous checkpoint (the same inputs give the same result) and its
row insert is a no-op, so no step is ever applied twice to the saved state.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from app.core.config import Settings, get_settings
from app.core.db import unit_of_work
from app.core.redis import get_redis
from app.models.enums import RunStatus
from app.training import queue

log = logging.getLogger("clora.trainer")

HEARTBEAT_S = 2.0


class JobCancelled(Exception):
    """The job was cancelled (or taken by another trainer) while it ran."""


class TrainerService:
    """Claims jobs one at a time and runs them on the warm engine; see the module doc."""

    def __init__(self, settings: Settings | None = None, worker_id: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.worker_id = worker_id or self.settings.trainer_id or socket.gethostname()
        self.state_root = self.settings.data_dir.resolve() / "trainer" / "jobs"
        self.stop = threading.Event()
        self._active: dict[
            uuid.UUID, tuple[Generator[None, None, dict[str, Any]], dict[str, Any]]
        ] = {}
        self._lost: set[uuid.UUID] = set()
        self.engine: Any = None
        self.tokenizer: Any = None

    # ---- lifecycle ------------------------------------------------------------------------
    def warm(self) -> None:
        """Load the base model and tokenizer once."""
        import torch
        from transformers import AutoTokenizer

        from trainer.engine import TrainingEngine

        torch.manual_seed(0)
        base = self.settings.base_model_path
        self.engine = TrainingEngine(base)
        self.tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)

    def run_forever(self) -> None:
        """Serve jobs until `stop` is set (SIGTERM/SIGINT set it). Jobs in hand stop at a
        step boundary and stay claimed, so a restart resumes them."""
        self.warm()
        beat = threading.Thread(target=self._beat, name="trainer-heartbeat", daemon=True)
        beat.start()
        log.info("trainer %s ready (base %s)", self.worker_id, self.settings.base_model_path)
        redis = get_redis()
        while not self.stop.is_set():
            try:
                if not self.run_round():
                    redis.blpop([queue.WAKE_KEY], timeout=1)
            except (OperationalError, RedisError) as exc:
                # Postgres or Redis is away: jobs in hand keep their checkpoints; retry soon.
                log.warning("trainer: %s; retrying in 2 s", type(exc).__name__)
                self.stop.wait(2)

    def run_round(self) -> bool:
        """Claim waiting jobs (up to `trainer_max_active`), then advance each job in hand by
        one step, round robin, so a long job never starves a short one. False when idle."""
        while len(self._active) < self.settings.trainer_max_active:
            with unit_of_work() as session:
                job = queue.claim(
                    session, self.worker_id, self.settings.trainer_stale_after_s,
                    exclude=list(self._active),
                )  # fmt: skip
                if job is None:
                    break
                job_id, kind, payload = job.id, job.kind, dict(job.payload)
            log.info("job %s (%s) claimed", job_id, kind)
            self._active[job_id] = (self._train(job_id, payload), payload)
        for job_id in list(self._active):
            if self.stop.is_set():
                return True
            self._advance(job_id)
        return bool(self._active)

    def _advance(self, job_id: uuid.UUID) -> None:
        steps, payload = self._active[job_id]
        try:
            if job_id in self._lost:  # the heartbeat found it cancelled or taken
                raise JobCancelled()
            next(steps)
            return
        except StopIteration as done:
            del self._active[job_id]
            with unit_of_work() as session:
                queue.finish(session, job_id, RunStatus.succeeded, result=done.value)
            log.info("job %s succeeded", job_id)
        except JobCancelled:
            del self._active[job_id]
            log.info("job %s cancelled", job_id)
        except (OperationalError, RedisError) as exc:
            # Transient: the job stays claimed and resumes from its last checkpoint.
            del self._active[job_id]
            log.warning("job %s paused (%s); it resumes from its checkpoint", job_id, exc)
            return
        except Exception as exc:
            from trainer.errors import TrainerError

            del self._active[job_id]
            if not isinstance(exc, TrainerError | ValueError | KeyError):
                log.exception("job %s failed", job_id)
            with unit_of_work() as session:
                queue.finish(
                    session, job_id, RunStatus.failed, error=f"{type(exc).__name__}: {exc}"
                )
        self._lost.discard(job_id)
        self._cleanup(job_id, payload)

    def _beat(self) -> None:
        redis = get_redis()
        while not self.stop.is_set():
            try:
                redis.set(queue.ALIVE_KEY, self.worker_id, ex=int(HEARTBEAT_S * 5))
                for job_id in list(self._active):
                    with unit_of_work() as session:
                        if not queue.heartbeat(session, job_id, self.worker_id):
                            self._lost.add(job_id)
            except Exception:  # a database or Redis outage: keep beating when they return
                log.warning("trainer heartbeat failed", exc_info=True)
            self.stop.wait(HEARTBEAT_S)

    # ---- the train job --------------------------------------------------------------------
    def _train(self, job_id: uuid.UUID, p: dict[str, Any]) -> Generator[None, None, dict[str, Any]]:
        """The job as a generator: one optimiser step per `next`; returns the result."""
        from trainer.config import LoraSettings
        from trainer.objective import build_batches, objective_step, objective_weights

        engine = self.engine
        adapter_id = f"job-{job_id}"
        state_dir = self.state_root / str(job_id)
        start = 1
        if (state_dir / "adapter_state.safetensors").is_file():
            st = engine.load_state(adapter_id, state_dir)
            start = _step_number(st.last_step_id) + 1
            log.info("job %s resumes at step %d from its checkpoint", job_id, start)
        else:
            lora = p["lora"]
            settings = LoraSettings(
                rank=lora["rank"], alpha=lora["alpha"], target_modules=tuple(lora["target_modules"])
            )
            if engine.has_adapter(adapter_id):
                engine.drop_adapter(adapter_id)
            parent = Path(p["parent_dir"]) if p.get("parent_dir") else None
            engine.create_adapter(adapter_id, settings, seed=p.get("seed", 0), parent_dir=parent)
        batches = build_batches(self.tokenizer, p.get("examples", {}))
        weights = objective_weights(p.get("mixture", {}), float(p.get("kl_coef", 0.0)))
        steps = int(p["steps"])
        for step in range(start, steps + 1):
            step_id = f"{job_id}:{step}"
            losses = objective_step(engine, adapter_id, batches, weights, float(p["lr"]),
                                    step_id=step_id)  # fmt: skip
            with unit_of_work() as session:
                queue.record_step(session, job_id, step, step_id, {"losses": losses})
            engine.save_state(adapter_id, state_dir)
            if self.settings.trainer_step_delay_s:  # tests widen the window for a kill -9
                time.sleep(self.settings.trainer_step_delay_s)
            yield
        write_to = Path(p["write_to"])
        write_to.mkdir(parents=True, exist_ok=True)
        engine.save_adapter(adapter_id, write_to)
        return {"steps": steps, "write_to": str(write_to)}

    def _cleanup(self, job_id: uuid.UUID, payload: dict[str, Any]) -> None:
        adapter_id = f"job-{job_id}"
        if self.engine is not None and self.engine.has_adapter(adapter_id):
            self.engine.drop_adapter(adapter_id)
        shutil.rmtree(self.state_root / str(job_id), ignore_errors=True)


def _step_number(step_id: str | None) -> int:
    if not step_id:
        return 0
    return int(step_id.rsplit(":", 1)[1])


def main() -> None:
    """Entry point of `clora trainer`: serve until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    service = TrainerService()

    def _stop(*_: object) -> None:
        service.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("trainer pid %d", os.getpid())
    service.run_forever()
