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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from app.core.config import Settings, get_settings
from app.core.db import unit_of_work
from app.core.logging import bound
from app.core.logging import configure as configure_logging
from app.core.redis import get_redis
from app.models.enums import RunStatus
from app.training import queue

log = logging.getLogger("clora.trainer")

HEARTBEAT_S = 2.0


class JobCancelled(Exception):
    """The job was cancelled (or taken by another trainer) while it ran."""


@dataclass
class StepWork:
    """What one job asks of a round: one optimiser step on its objective."""

    work: Any  # trainer.objective.ObjectiveWork
    lr: float
    step_id: str
    tokens: int
    """Padded tokens of the step: what fair share counts."""


@dataclass
class ActiveJob:
    """A job in hand: its step generator, the step it waits to have applied, its share."""

    steps: Generator[StepWork | None, dict[str, float], dict[str, Any]]
    """Yields each step's work, or None while it has no step ready (an RL job between
    requests)."""
    payload: dict[str, Any]
    weight: float
    pending: StepWork | None = None
    credit: float = 0.0


def trainer_config(settings: Settings) -> Any:
    """The training engine's settings from clora's (`CLORA_TRAINER_*`)."""
    from trainer.config import TrainerConfig

    return TrainerConfig(
        base_model_dir=settings.base_model_path,
        device=settings.trainer_device,
        dtype=settings.trainer_dtype,
        max_tokens_per_pass=settings.trainer_tokens_per_pass,
        gradient_checkpointing=settings.trainer_gradient_checkpointing,
        logit_chunk_bytes=settings.trainer_logit_chunk_mb * 2**20,
        memory_budget_bytes=(
            int(settings.trainer_memory_gb * 2**30) if settings.trainer_memory_gb else None
        ),
        engine_gpu_share=settings.engine_gpu_share,
    )


class TrainerDaemon:
    """Claims jobs and trains all of them together on the warm engine; see the module doc.

    Each round, every job in hand that its fair share allows contributes one optimiser step;
    their rows share forward/backward passes (`trainer.objective.accumulate_round`), then each
    adapter takes its own optimiser step. Fair share is deficit round robin on padded tokens:
    each round a job earns `quantum x share / largest share` tokens of credit (the quantum
    being the smallest step in hand, a job's share its weight over its tenant's jobs in hand)
    and steps when its credit covers its step, so under contention each tenant's trained
    tokens follow its weight and nobody starves."""

    def __init__(self, settings: Settings | None = None, worker_id: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.worker_id = worker_id or self.settings.trainer_id or socket.gethostname()
        self.state_root = self.settings.data_dir.resolve() / "trainer" / "jobs"
        self.stop = threading.Event()
        self._active: dict[uuid.UUID, ActiveJob] = {}
        self._lost: set[uuid.UUID] = set()
        self.engine: Any = None
        self.tokenizer: Any = None
        self.trained_tokens: dict[uuid.UUID, int] = {}
        """Padded tokens each job has trained (what fair share divides)."""
        self.round_passes: dict[uuid.UUID, dict[str, int]] = {}
        """Each job's last applied step: jobs in its round, passes its rows went through, and
        how many of those it shared with other jobs (recorded with the step)."""

    # ---- lifecycle ------------------------------------------------------------------------
    def warm(self) -> None:
        """Load the base model and tokenizer once."""
        import torch
        from transformers import AutoTokenizer

        from trainer.engine import TrainingEngine

        torch.manual_seed(0)
        base = self.settings.base_model_path
        self.engine = TrainingEngine(base, config=trainer_config(self.settings))
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
        """Claim waiting jobs (up to `trainer_max_active`), then run one shared round: every
        job its fair share admits takes one step. False when no step was applied (the caller
        then blocks on the wake-up list until new work is pushed)."""
        while len(self._active) < self.settings.trainer_max_active:
            with unit_of_work() as session:
                job = queue.claim(
                    session,
                    self.worker_id,
                    self.settings.trainer_stale_after_s,
                    exclude=list(self._active),
                )
                if job is None:
                    break
                job_id, kind, payload = job.id, job.kind, dict(job.payload)
            weight = max(float(payload.get("weight", 1.0)), 1e-3)
            steps = self._rl(job_id, payload) if kind == "rl" else self._train(job_id, payload)
            self._active[job_id] = ActiveJob(steps, payload, weight)
            with self._logged(job_id):
                log.info("job %s (%s) claimed", job_id, kind)
        for job_id in list(self._active):  # new jobs set up; idle RL jobs look for a step
            if self._active[job_id].pending is None:
                self._resume(job_id, None)
        if self.stop.is_set() or not self._active:
            return False
        chosen = self._admit()
        applied = self._apply(chosen)
        for job_id, losses in applied.items():
            if self.stop.is_set():
                return True
            self._resume(job_id, losses)
        return bool(applied)

    def _admit(self) -> list[uuid.UUID]:
        """The jobs that step this round (deficit round robin on padded tokens)."""
        jobs = {j: a for j, a in self._active.items() if a.pending is not None}
        if not jobs:
            return []
        quantum = min(a.pending.tokens for a in jobs.values())  # type: ignore[union-attr]
        # A tenant's weight is shared by its jobs in hand (three agents of one tenant do not
        # get three shares); the largest share steps every round, the others in proportion.
        per_tenant: dict[str, int] = {}
        for a in jobs.values():
            tenant = str(a.payload.get("tenant", ""))
            per_tenant[tenant] = per_tenant.get(tenant, 0) + 1
        share = {
            j: a.weight / per_tenant[str(a.payload.get("tenant", ""))] for j, a in jobs.items()
        }
        top = max(share.values())
        while True:
            for j, active in jobs.items():
                active.credit += share[j] / top * quantum
            chosen = [j for j, a in jobs.items() if a.credit >= a.pending.tokens]  # type: ignore[union-attr]
            if chosen:
                break
        for j in chosen:
            jobs[j].credit -= jobs[j].pending.tokens  # type: ignore[union-attr]
        for a in jobs.values():  # no banking beyond one step: a late job cannot burst
            a.credit = min(a.credit, a.pending.tokens)  # type: ignore[union-attr]
        return chosen

    def _apply(self, chosen: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, float] | Exception]:
        """Accumulate the chosen jobs' steps in shared passes, then one optimiser step each.
        A job whose own work fails is failed alone: the round is redone job by job."""
        from trainer.objective import accumulate_round

        engine = self.engine
        pending = {j: self._active[j].pending for j in chosen if j not in self._lost}
        for j in chosen:
            if j in self._lost:
                self._close(j, JobCancelled())
        out: dict[uuid.UUID, dict[str, float] | Exception] = {}
        if not pending:
            return out
        order = list(pending)
        adapters = {j: pending[j].work.adapter_id for j in order}  # type: ignore[union-attr]
        before = {j: (engine.passes[a], engine.shared_passes[a]) for j, a in adapters.items()}
        try:
            losses = accumulate_round(engine, [pending[j].work for j in order])  # type: ignore[union-attr]
            results: dict[uuid.UUID, dict[str, float] | Exception] = dict(
                zip(order, losses, strict=True)
            )
        except Exception:  # noqa: BLE001 - redo job by job, failing only the job at fault
            results = {}
            for j in order:
                engine.zero_grad(pending[j].work.adapter_id)  # type: ignore[union-attr]
            for j in order:
                try:
                    results[j] = accumulate_round(engine, [pending[j].work])[0]  # type: ignore[union-attr]
                except Exception as exc:  # noqa: BLE001
                    engine.zero_grad(pending[j].work.adapter_id)  # type: ignore[union-attr]
                    results[j] = exc
        for j, a in adapters.items():
            self.round_passes[j] = {
                "round_jobs": len(order),
                "passes": engine.passes[a] - before[j][0],
                "shared_passes": engine.shared_passes[a] - before[j][1],
            }
        for j in order:
            work = pending[j]
            assert work is not None
            if isinstance(results[j], Exception):
                out[j] = results[j]
                continue
            try:
                if results[j]:
                    engine.optim_step(
                        work.work.adapter_id, work.lr, max_grad_norm=1.0, step_id=work.step_id
                    )
                else:
                    engine.store.get(work.work.adapter_id).last_step_id = work.step_id
                self.trained_tokens[j] = self.trained_tokens.get(j, 0) + work.tokens
                out[j] = results[j]
            except Exception as exc:  # noqa: BLE001 - a non-finite gradient fails its own job
                out[j] = exc
        return out

    def _logged(self, job_id: uuid.UUID) -> Any:
        """Log lines about a job carry its id and the ids of the work that queued it."""
        payload = self._active[job_id].payload if job_id in self._active else {}
        return bound(**{**payload.get("log_context", {}), "job_id": job_id})

    def _resume(self, job_id: uuid.UUID, losses: dict[str, float] | Exception | None) -> None:
        """Hand the round's result to the job; it records and checkpoints the step and asks
        for its next one, or ends."""
        with self._logged(job_id):
            self._resume_logged(job_id, losses)

    def _resume_logged(
        self, job_id: uuid.UUID, losses: dict[str, float] | Exception | None
    ) -> None:
        active = self._active[job_id]
        try:
            if job_id in self._lost:  # the heartbeat found it cancelled or taken
                raise JobCancelled()
            if isinstance(losses, Exception):
                raise losses
            active.pending = next(active.steps) if losses is None else active.steps.send(losses)
        except StopIteration as done:
            with unit_of_work() as session:
                queue.finish(session, job_id, RunStatus.succeeded, result=done.value)
            log.info("job %s succeeded", job_id)
            self._close(job_id, None)
        except (OperationalError, RedisError) as exc:
            # Transient: the job stays claimed and resumes from its last checkpoint.
            self._drop(job_id)
            log.warning("job %s paused (%s); it resumes from its checkpoint", job_id, exc)
        except Exception as exc:  # noqa: BLE001 - the job's own failure, recorded on the job
            self._close(job_id, exc)

    def _close(self, job_id: uuid.UUID, error: Exception | None) -> None:
        """End a job in hand: cancelled (nothing to write), failed (its error) or done."""
        with self._logged(job_id):
            self._close_logged(job_id, error)

    def _close_logged(self, job_id: uuid.UUID, error: Exception | None) -> None:
        if isinstance(error, JobCancelled):
            log.info("job %s cancelled", job_id)
        elif error is not None:
            from trainer.errors import TrainerError

            if not isinstance(error, TrainerError | ValueError | KeyError):
                log.error("job %s failed", job_id, exc_info=error)
            with unit_of_work() as session:
                queue.finish(
                    session, job_id, RunStatus.failed, error=f"{type(error).__name__}: {error}"
                )
        payload = self._active[job_id].payload
        self._drop(job_id)
        self._lost.discard(job_id)
        self._cleanup(job_id, payload)

    def _drop(self, job_id: uuid.UUID) -> None:
        self.round_passes.pop(job_id, None)
        active = self._active.pop(job_id, None)
        if active is not None:
            active.steps.close()

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
    def _train(
        self, job_id: uuid.UUID, p: dict[str, Any]
    ) -> Generator[StepWork, dict[str, float], dict[str, Any]]:
        """The job as a generator: it yields each step's work, receives the step's losses once
        the round applied it, records and checkpoints it; returns the result."""
        from trainer.objective import (
            ObjectiveWork,
            build_batches,
            objective_weights,
            step_examples,
        )

        engine = self.engine
        adapter_id = f"job-{job_id}"
        state_dir = self.state_root / str(job_id)
        start = 1
        if (state_dir / "adapter_state.safetensors").is_file():
            st = engine.load_state(adapter_id, state_dir)
            start = _step_number(st.last_step_id) + 1
            log.info("job %s resumes at step %d from its checkpoint", job_id, start)
        else:
            self._create_adapter(adapter_id, p)
        examples = p.get("examples", {})
        everything = build_batches(self.tokenizer, examples)
        for batch in everything.values():  # refused here, alone, not inside a shared pass
            engine.check_batch(batch)
        weights = objective_weights(p.get("mixture", {}), float(p.get("kl_coef", 0.0)))
        batch_size = p.get("batch_size")
        seed, beta = int(p.get("seed", 0)), float(p.get("dpo_beta", 0.1))

        def work_of(step: int) -> tuple[Any, int]:
            batches = (
                build_batches(self.tokenizer, step_examples(examples, batch_size, seed, step))
                if batch_size
                else everything
            )
            tokens = sum(
                len(b) * b.sequences_per_row() * max(b.row_length(r) for r in range(len(b)))
                for kind, b in batches.items()
                if weights.get(kind, 0.0) > 0
            )
            # A cycle's ratings: the clipped ratio against the pinned parent (`LossSpec.proximal`).
            work = ObjectiveWork(adapter_id, batches, weights, beta, pg_proximal="reference")
            return work, max(tokens, 1)

        steps = int(p["steps"])
        stop_margin = p.get("stop_margin")
        learned = False
        step = start - 1
        if start > 1 and stop_margin is not None:  # resumed: had the job already stopped?
            with unit_of_work() as session:
                last = queue.steps_after(session, job_id, start - 2)
                learned = bool(last and last[0].metrics.get("learned"))
        for step in range(start, 0 if learned else steps + 1):
            step_id = f"{job_id}:{step}"
            work, tokens = work_of(step)
            losses = yield StepWork(work, float(p["lr"]), step_id, tokens)
            # The margin was measured before this step's update, which only widens it.
            learned = stop_margin is not None and losses.get("margin", -1.0) >= stop_margin
            with unit_of_work() as session:
                queue.record_step(
                    session,
                    job_id,
                    step,
                    step_id,
                    {
                        "losses": losses,
                        "learned": learned,
                        "tokens": tokens,
                        **self.round_passes.pop(job_id, {}),
                    },
                )
            engine.save_state(adapter_id, state_dir)
            if self.settings.trainer_step_delay_s:  # tests widen the window for a kill -9
                time.sleep(self.settings.trainer_step_delay_s)
            if learned:
                break
        write_to = Path(p["write_to"])
        write_to.mkdir(parents=True, exist_ok=True)
        engine.save_adapter(adapter_id, write_to)
        return {"steps": step, "max_steps": steps, "learned": learned, "write_to": str(write_to)}

    # ---- the rl job: steps an experiment loop sends one at a time ---------------------------
    def _rl(
        self, job_id: uuid.UUID, p: dict[str, Any]
    ) -> Generator[StepWork | None, dict[str, float], dict[str, Any]]:
        """An RL experiment's adapter, trained one policy-gradient step per request.

        The loop (rollouts, rewards, advantages) runs elsewhere and pushes each step's batch to
        `queue.RL_INBOX`; the step shares rounds with every other job, then the adapter is
        checkpointed, written to the request's ``save_to`` for publishing, and the result is
        pushed to `queue.RL_REPLY`. Yields None while no request waits. A request for a step
        already applied (sent again after a restart) is answered from its record."""
        import json

        from trainer.batch import Batch
        from trainer.objective import ObjectiveWork

        engine, redis = self.engine, get_redis()
        adapter_id = f"job-{job_id}"
        state_dir = self.state_root / str(job_id)
        last = 0
        if (state_dir / "adapter_state.safetensors").is_file():
            last = _step_number(engine.load_state(adapter_id, state_dir).last_step_id)
        else:
            self._create_adapter(adapter_id, p)
        inbox = queue.RL_INBOX.format(job=job_id)
        idle_since = time.monotonic()
        while True:
            raw: Any = redis.lpop(inbox)
            if raw is None:
                if time.monotonic() - idle_since > self.settings.trainer_rl_idle_s:
                    raise TimeoutError(
                        f"no step request for {self.settings.trainer_rl_idle_s:.0f} s"
                    )
                yield None
                continue
            idle_since = time.monotonic()
            request = json.loads(raw)
            if request.get("done"):
                return {"steps": last}
            step = int(request["step"])
            reply = queue.RL_REPLY.format(job=job_id, step=step)
            if step <= last:
                with unit_of_work() as session:
                    done = queue.steps_after(session, job_id, step - 1)
                    result = dict(done[0].metrics) if done and done[0].step == step else {}
                redis.rpush(reply, json.dumps({"step": step, **result}))
                redis.expire(reply, 3600)
                continue
            save_to = Path(request["save_to"])
            if request.get("batch") is None:  # publish the weights as they are
                save_to.mkdir(parents=True, exist_ok=True)
                engine.save_adapter(adapter_id, save_to)
                redis.rpush(reply, json.dumps({"step": step, "losses": {}}))
                redis.expire(reply, 3600)
                continue
            batch = Batch(**request["batch"])
            try:
                engine.check_batch(batch)
            except ValueError as exc:  # the loop's own bad batch: its step fails, not the job
                redis.rpush(reply, json.dumps({"step": step, "error": str(exc)}))
                redis.expire(reply, 3600)
                continue
            tokens = len(batch) * max(batch.row_length(r) for r in range(len(batch)))
            work = ObjectiveWork(adapter_id, {"pg": batch}, {"pg": 1.0})
            losses = yield StepWork(work, float(request["lr"]), f"{job_id}:{step}", tokens)
            with unit_of_work() as session:
                metrics = {"losses": losses, "tokens": tokens, **self.round_passes.pop(job_id, {})}
                queue.record_step(session, job_id, step, f"{job_id}:{step}", metrics)
            engine.save_state(adapter_id, state_dir)
            save_to.mkdir(parents=True, exist_ok=True)
            engine.save_adapter(adapter_id, save_to)
            last = step
            redis.rpush(reply, json.dumps({"step": step, "losses": losses}))
            redis.expire(reply, 3600)

    def _create_adapter(self, adapter_id: str, p: dict[str, Any]) -> None:
        """A fresh adapter of the payload's LoRA shape, from its parent's weights if any."""
        from trainer.config import LoraSettings

        lora = p["lora"]
        settings = LoraSettings(
            rank=lora["rank"], alpha=lora["alpha"], target_modules=tuple(lora["target_modules"])
        )
        if self.engine.has_adapter(adapter_id):
            self.engine.drop_adapter(adapter_id)
        parent = Path(p["parent_dir"]) if p.get("parent_dir") else None
        self.engine.create_adapter(adapter_id, settings, seed=p.get("seed", 0), parent_dir=parent)

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
    configure_logging()
    service = TrainerDaemon()

    def _stop(*_: object) -> None:
        service.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("trainer pid %d", os.getpid())
    service.run_forever()
