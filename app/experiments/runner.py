"""The synchronous RL loop of one experiment, and N of them sharing one engine and trainer.

Each step: sample G rollouts for each of P prompts through the shared engine with the
agent's current version, reward them, compute group-relative advantages, run one
policy-gradient optimiser step on the shared trainer, publish the new version into the
engine, and record the step's metrics."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.adapters import service as registry
from app.adapters.repository import AdapterVersionRepository
from app.adapters.storage import copy_from
from app.agents.repository import AgentRepository
from app.core.config import Settings
from app.core.db import unit_of_work
from app.experiments.repository import ExperimentRepository
from app.experiments.schemas import ExperimentConfig
from app.models import ExperimentStep, Tenant
from app.models.enums import RunStatus
from app.sampler.identity import IDENTITY_ADAPTER, write_identity_adapter
from app.training import client as trainer_client

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What one RL step measured (also stored as the step's metrics)."""

    step: int
    metrics: dict[str, Any]


@dataclass
class Rollout:
    """One step's episodes, the adapter version they were sampled from, and their timing."""

    step: int
    model: str
    episodes: list[Any]
    started: float
    seconds: float


class ExperimentCancelled(Exception):
    """The experiment was cancelled; it stops at a step boundary."""


class ExperimentLoop:
    """One experiment: owns its adapter on the shared trainer and its versions in the registry."""

    def __init__(
        self,
        tenant_id: uuid.UUID,
        experiment_id: uuid.UUID,
        settings: Settings,
        trainer: trainer_client.RemoteTrainer,
        *,
        on_step: Callable[[uuid.UUID, StepReport], None] | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.experiment_id = experiment_id
        self.settings = settings
        self.trainer = trainer
        self.on_step = on_step
        self.engine_url = registry.engine_urls(settings)[0].rstrip("/")
        self.sampler = trainer_client.token_sampler(self.engine_url)
        self.codec = trainer_client.chat_tokens(settings.base_model_path)
        self.adapter_id = f"exp-{experiment_id}"

    def _load(self) -> None:
        with unit_of_work() as session:
            experiment = ExperimentRepository(session).get(self.tenant_id, self.experiment_id)
            if experiment is None:
                raise LookupError(f"experiment {self.experiment_id} is gone")
            if experiment.status != RunStatus.queued:
                raise ExperimentCancelled(str(experiment.status))
            experiment.status = RunStatus.running
            experiment.started_at = datetime.now(UTC)
            tenant = session.get(Tenant, self.tenant_id)
            agent = AgentRepository(session).get(self.tenant_id, experiment.agent_id)
            assert tenant is not None and agent is not None
            live = (
                AdapterVersionRepository(session).get(self.tenant_id, agent.live_version_id)
                if agent.live_version_id
                else None
            )
            self.config = ExperimentConfig.model_validate(experiment.config)
            self.tenant_slug, self.agent_name, self.agent_id = tenant.slug, agent.name, agent.id
            self.weight = trainer_client.share(tenant.slug, agent.settings)
            self.lora = trainer_client.LoraShape(
                agent.lora_rank, agent.lora_alpha, tuple(agent.lora_target_modules)
            )
            self.version: tuple[uuid.UUID, str, str] | None = (
                (live.id, registry.adapter_name(tenant.slug, agent.name, live.number), live.path)
                if live
                else None
            )

    def _check_not_cancelled(self) -> None:
        with unit_of_work() as session:
            experiment = ExperimentRepository(session).get(self.tenant_id, self.experiment_id)
            if experiment is None or experiment.status == RunStatus.cancelled:
                raise ExperimentCancelled("cancelled")

    async def run(self) -> RunStatus:
        try:
            await asyncio.to_thread(self._load)
        except ExperimentCancelled:
            return RunStatus.cancelled
        self.env = trainer_client.get_environment(self.config.environment)
        parent = Path(self.version[2]) if self.version else None
        self._trained_from = self._live_model()
        self.trainer.ensure_adapter(
            self.adapter_id,
            self.lora,
            parent,
            seed=self.config.seed,
            tenant_id=self.tenant_id,
            agent_id=self.agent_id,
            weight=self.weight,
            steps=self.config.steps,
        )
        if self.version is None:
            identity = write_identity_adapter(
                self.settings.base_model_path, self.settings.adapter_dir.resolve() / "_identity"
            )
            await asyncio.to_thread(
                registry.load_into_engines, self.settings, IDENTITY_ADAPTER, str(identity)
            )
        status = RunStatus.succeeded
        alive = asyncio.create_task(self._keep_alive())
        try:
            await self._steps()
        except ExperimentCancelled:
            status = RunStatus.cancelled
        except Exception as exc:
            log.exception("experiment %s failed", self.experiment_id)
            await asyncio.to_thread(self._finish, RunStatus.failed, f"{type(exc).__name__}: {exc}")
            return RunStatus.failed
        finally:
            alive.cancel()
            self.trainer.drop(self.adapter_id)
            await self.sampler.close()  # inside this loop: a later GC would find it closed
        await asyncio.to_thread(self._finish, status, None)
        return status

    async def _keep_alive(self) -> None:
        """Renew the liveness key the reaper looks for (`experiments.service.reap_orphans`)."""
        from app.core.redis import get_redis
        from app.experiments.service import ALIVE_TTL_S, alive_key

        while True:
            try:
                await asyncio.to_thread(
                    get_redis().set, alive_key(self.experiment_id), "1", ex=ALIVE_TTL_S
                )
            except Exception:  # noqa: BLE001 - Redis down: the reaper waits a TTL anyway
                log.warning("experiment %s: liveness key not renewed", self.experiment_id)
            await asyncio.sleep(10)

    def _finish(self, status: RunStatus, error: str | None) -> None:
        with unit_of_work() as session:
            experiment = ExperimentRepository(session).get(self.tenant_id, self.experiment_id)
            if experiment is None:
                return
            if experiment.status != RunStatus.cancelled:
                experiment.status = status
            experiment.finished_at = experiment.finished_at or datetime.now(UTC)
            experiment.error = error

    def _live_model(self) -> str:
        return self.version[1] if self.version else IDENTITY_ADAPTER

    async def _rollout(self, step: int, model: str) -> Rollout:
        """Step ``step``'s episodes on ``model`` (token-level, `trainer.envs.tokens`)."""
        cfg = self.config
        started = time.perf_counter()
        prompts = self.env.tasks("train", cfg.prompts_per_step, seed=cfg.seed * 1_000_003 + step)
        episodes = await trainer_client.play_tokens(
            self.sampler,
            self.codec,
            model,
            self.env,
            prompts,
            group_size=cfg.group_size,
            temperature=cfg.temperature,
            mode=cfg.rollout_mode,
            seed=cfg.seed * 7919 + step * 100_003,
            max_turns=cfg.max_turns,
            max_tokens=cfg.max_tokens,
        )
        return Rollout(step, model, episodes, started, time.perf_counter() - started)

    async def _steps(self) -> None:
        """Every step: roll out, train, publish. With ``pipeline`` the next step's rollout
        starts on the version live before this step's training (one step off-policy; the
        clipped importance ratio against the logged sampling logprobs corrects for it)."""
        steps, pipeline = self.config.steps, self.config.pipeline
        ahead: asyncio.Task[Rollout] | None = None
        try:
            for step in range(steps):
                await asyncio.to_thread(self._check_not_cancelled)
                rollout = await (ahead or self._rollout(step, self._live_model()))
                ahead = None
                if pipeline and step + 1 < steps:
                    ahead = asyncio.create_task(self._rollout(step + 1, self._live_model()))
                await self._learn(rollout)
        finally:
            if ahead is not None:
                ahead.cancel()

    async def _learn(self, rollout: Rollout) -> None:
        cfg, step, episodes = self.config, rollout.step, rollout.episodes
        rewards = [e.reward for e in episodes]
        batch, used_groups, tokens = trainer_client.rl_batch(
            episodes, cfg.group_size, cfg.advantage
        )
        t1 = time.perf_counter()
        loss = None
        staging = self.settings.data_dir.resolve() / "staging" / f"{self.adapter_id}-{step}"
        if batch is not None:
            result = await self.trainer.step(
                self.adapter_id,
                batch,
                cfg.advantage,
                cfg.learning_rate,
                step_id=f"{self.experiment_id}:{step}",
                save_to=staging,
            )
            if result.error is not None:
                raise result.error
            loss = result.loss
        else:  # nothing to learn from this step: publish the weights as they are
            await self.trainer.save(
                self.adapter_id, step_id=f"{self.experiment_id}:{step}", save_to=staging
            )
        train_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        await asyncio.to_thread(self._check_not_cancelled)
        version_id = await asyncio.to_thread(self._publish, step, staging)
        sync_s = time.perf_counter() - t2
        held_out: dict[str, Any] = {}
        if cfg.eval_tasks > 0:  # the published version, greedy, on the same held-out tasks
            t3 = time.perf_counter()
            assert self.version is not None  # _publish has just made one
            graded = await trainer_client.play_tokens(
                self.sampler,
                self.codec,
                self.version[1],
                self.env,
                self.env.tasks("test", cfg.eval_tasks),
                temperature=0.0,
                max_turns=cfg.max_turns,
                max_tokens=cfg.max_tokens,
            )
            held_out = {
                "eval_accuracy": sum(e.correct for e in graded) / len(graded),
                "eval_tasks": len(graded),
                "eval_s": time.perf_counter() - t3,
            }
        generated = sum(
            len(t.completion_token_ids or ()) for e in episodes for t in e.assistant_turns
        )
        metrics = {
            "reward_mean": statistics.fmean(rewards),
            "accuracy": sum(e.correct for e in episodes) / len(episodes),
            "calculator_rate": sum(e.used_calculator for e in episodes) / len(episodes),
            "loss": loss,
            "episodes": len(episodes),
            "groups_with_signal": used_groups,
            "tokens": tokens,
            "generated_tokens": generated,
            "rollout_s": rollout.seconds,
            "rollout_model": rollout.model,
            "policy_lag": int(rollout.model != self._trained_from),
            "train_s": train_s,
            "sync_s": sync_s,
            "step_s": time.perf_counter() - rollout.started,
            **held_out,
        }
        self._trained_from = self._live_model()
        await asyncio.to_thread(self._record, step, version_id, metrics)
        if self.on_step:
            self.on_step(self.experiment_id, StepReport(step, metrics))

    def _publish(self, step: int, staging: Path) -> uuid.UUID:
        """Publish the adapter the step wrote to ``staging`` as the agent's next version."""
        with unit_of_work() as session:
            tenant = session.get(Tenant, self.tenant_id)
            assert tenant is not None
            version = registry.publish(
                session,
                self.settings,
                tenant,
                self.agent_id,
                copy_from(staging),
                parent_id=self.version[0] if self.version else None,
                source="experiment",
                metrics={"experiment": str(self.experiment_id), "step": step},
            )
            name = registry.adapter_name(self.tenant_slug, self.agent_name, version.number)
            self.version = (version.id, name, version.path)
        registry.load_into_engines(self.settings, name, self.version[2])
        return self.version[0]

    def _record(self, step: int, version_id: uuid.UUID, metrics: dict[str, Any]) -> None:
        with unit_of_work() as session:
            ExperimentRepository(session).record_step(
                ExperimentStep(
                    tenant_id=self.tenant_id,
                    experiment_id=self.experiment_id,
                    step=step,
                    adapter_version_id=version_id,
                    metrics=metrics,
                    created_at=datetime.now(UTC),
                )
            )


async def run_experiments(
    settings: Settings,
    experiments: list[tuple[uuid.UUID, uuid.UUID]],
    *,
    trainer: trainer_client.RemoteTrainer | None = None,
    on_step: Callable[[uuid.UUID, StepReport], None] | None = None,
) -> list[RunStatus]:
    """Run experiments concurrently on one engine and one shared trainer."""
    shared = trainer or trainer_client.RemoteTrainer()
    loops = [ExperimentLoop(t, e, settings, shared, on_step=on_step) for t, e in experiments]
    return list(await asyncio.gather(*(loop.run() for loop in loops)))
