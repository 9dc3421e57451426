"""One learning cycle: gather examples, train a candidate, evaluate it, promote or keep it."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.adapters import service as registry
from app.adapters.repository import AdapterVersionRepository
from app.adapters.signals import (
    CopiesSignal,
    EnvironmentSignal,
    PreservationSignal,
    ScoreSignal,
    Signals,
    agreement_upper_bound,
    copies_allowed,
)
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.core.errors import EngineUnavailable
from app.cycles import evaluation, gate
from app.cycles.plan import deadline_s, plan_cycle
from app.cycles.repository import CycleRepository
from app.cycles.stages import Candidate, CyclePlan, EnvironmentScore, Payload
from app.cycles.untouched import near_any
from app.fine_tuning import cycle as ft
from app.fine_tuning.service import start_waiting
from app.models import CycleRun, Tenant
from app.models.enums import AdapterStatus, RunStatus
from app.sampler.identity import IDENTITY_ADAPTER, write_identity_adapter
from app.training import client as trainer_client

log = logging.getLogger(__name__)


class CycleGone(Exception):
    """The cycle row no longer exists."""


def _heartbeat(
    tenant_id: uuid.UUID, run_id: uuid.UUID, progress: float | None, **metrics: Any
) -> None:
    """Renew a running cycle's heartbeat (and its progress and metrics, when given)."""
    with unit_of_work() as session:
        run = CycleRepository(session).get_run(tenant_id, run_id)
        if run is None or run.status != RunStatus.running:
            return
        run.heartbeat_at = datetime.now(UTC)
        if progress is not None:
            run.progress = progress
        if metrics:
            run.metrics = {**(run.metrics or {}), **metrics}


@contextmanager
def _beating(tenant_id: uuid.UUID, run_id: uuid.UUID, every_s: float) -> Iterator[None]:
    """Heartbeat the cycle from a thread while it runs: evaluation and publishing take minutes
    on a busy CPU, and a silent cycle would be handed to a second worker by the reaper."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                _heartbeat(tenant_id, run_id, None)
            except Exception:  # noqa: BLE001 - a database blip: the next beat tries again
                log.warning("cycle %s heartbeat failed", run_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"cycle-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def run_cycle(tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunStatus:
    """Run a claimed cycle to its end; a duplicate delivery of a live cycle does nothing."""
    settings = get_settings()
    now = datetime.now(UTC)
    with unit_of_work() as session:
        repo = CycleRepository(session)
        run = repo.get_run(tenant_id, run_id)
        if run is None:
            raise CycleGone(str(run_id))
        stale = now - timedelta(seconds=settings.cycle_stale_after_s)
        if not repo.claim(tenant_id, run_id, now, stale):
            return RunStatus(run.status)
        agent_id = run.agent_id
    try:
        with unit_of_work() as session:
            run = CycleRepository(session).get_run(tenant_id, run_id)
            assert run is not None
            plan = plan_cycle(session, run, settings)
            allowed = deadline_s(plan, settings)
            run.deadline_at = datetime.now(UTC) + timedelta(seconds=allowed)
            run.metrics = {**(run.metrics or {}), "deadline_s": round(allowed)}
    except Exception as exc:  # a plan that cannot be made fails the run, never blocks the agent
        log.exception("cycle %s could not be planned", run_id)
        _fail(tenant_id, run_id, exc)
        return RunStatus.failed
    try:
        # Four beats per stale period (at most every 10 s): a slow step never looks dead.
        with _beating(tenant_id, run_id, min(10.0, settings.cycle_stale_after_s / 4)):
            status = _execute(plan, settings)
    except Exception as exc:
        log.exception("cycle %s failed", run_id)
        status = _fail(tenant_id, run_id, exc)
        if status == RunStatus.failed and plan.job is not None:
            ft.event(plan.job.id, f"The job failed: {type(exc).__name__}: {exc}", level="error")
    finally:
        with unit_of_work() as session:  # a fine-tuning job waiting for this agent starts now
            start_waiting(session, agent_id)
    return status


def _locked_run(session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID) -> CycleRun | None:
    """The run, its row locked until the transaction ends: a cancel (which locks it too) and
    the runner's last write never overwrite each other."""
    run = CycleRepository(session).get_run(tenant_id, run_id)
    if run is not None:
        session.refresh(run, with_for_update=True)
    return run


def _fail(tenant_id: uuid.UUID, run_id: uuid.UUID, exc: Exception) -> RunStatus:
    """Mark the run failed with the error, unless it was cancelled (its trainer job went with
    it); returns what the run is now."""
    with unit_of_work() as session:
        run = _locked_run(session, tenant_id, run_id)
        if run is None:
            return RunStatus.failed
        if run.status != RunStatus.running:  # cancelled, or failed by the reaper at its deadline
            return RunStatus(run.status)
        run.status = RunStatus.failed
        run.finished_at = datetime.now(UTC)
        run.error = f"{type(exc).__name__}: {exc}"[:4000]
    return RunStatus.failed


def _status(tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunStatus:
    """The run's status now (a run that is gone counts as cancelled)."""
    with unit_of_work() as session:
        run = CycleRepository(session).get_run(tenant_id, run_id)
        return RunStatus.cancelled if run is None else RunStatus(run.status)


ANCHOR_TASKS = 32
"""Environment tasks (train split) whose parent answers join the KL term, for an agent with an
environment: the behaviour to keep even before the agent has any traffic."""


class _Clock:
    """Seconds spent in each phase of a cycle, for its metrics."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


@dataclass
class _Cycle:
    """A running cycle: its plan, where its engine is, and its clock."""

    plan: CyclePlan
    settings: Any
    engine_url: str
    clock: _Clock = field(default_factory=_Clock)

    def beat(self, progress: float | None, **metrics: Any) -> None:
        _heartbeat(self.plan.tenant_id, self.plan.run_id, progress, **metrics)

    def status(self) -> RunStatus:
        return _status(self.plan.tenant_id, self.plan.run_id)

    def cancelled(self) -> bool:
        """Whether the run is no longer this runner's: cancelled, or failed by the reaper at
        its deadline (a runner that hung and came back stops at its next check)."""
        return self.status() != RunStatus.running

    def event(self, message: str, **kw: Any) -> None:
        """A line in the fine-tuning job's log, when the cycle runs one."""
        ft.event(self.plan.job.id if self.plan.job else None, message, **kw)


def _finish(cycle: _Cycle, status: RunStatus, **metrics: Any) -> RunStatus:
    with unit_of_work() as session:
        run = _locked_run(session, cycle.plan.tenant_id, cycle.plan.run_id)
        assert run is not None
        if run.status != RunStatus.running:  # cancelled, or failed at its deadline
            return RunStatus(run.status)
        run.status = status
        run.finished_at = datetime.now(UTC)
        run.progress = 1.0
        run.metrics = {**(run.metrics or {}), **metrics}
    return status


def _execute(plan: CyclePlan, settings: Any) -> RunStatus:
    """The stages after planning: sample (a reinforcement job's rollouts), train, publish,
    evaluate, decide, record."""
    cycle = _Cycle(plan, settings, registry.engine_urls(settings)[0].rstrip("/"))
    parent_name = _load_parent(settings, plan)
    plan = cycle.plan = _sample(cycle, plan, parent_name)
    reason = plan.training.nothing_to_train()
    if reason is not None:
        if plan.job is not None and plan.job.rollouts is not None:
            reason = "no rollouts to learn from: every prompt's samples scored the same"
        cycle.event(f"The job ended: {reason}", level="error")
        return _finish(cycle, RunStatus.rejected, **plan.counts, reason=reason, decision=reason)
    cycle.event(f"Fine-tuning job started: {plan.training.steps} steps")
    plan = cycle.plan = _anchor(cycle, plan, parent_name)
    if cycle.cancelled():  # cancelled (or failed at its deadline) before training began
        return cycle.status()
    history, staging = _train(cycle)
    if cycle.cancelled():  # cancelled as training ended: nothing is published
        return cycle.status()
    candidate = _publish(cycle, staging)
    signals = _measure_until_done(cycle, parent_name, candidate)
    verdict = gate.decide(signals, plan.evaluation.rule)
    return _record(cycle, candidate, signals, verdict, history)


def _sample(cycle: _Cycle, plan: CyclePlan, parent_name: str) -> CyclePlan:
    """A reinforcement job's rollouts on the parent become its policy-gradient rows (and set
    its steps); any other plan is returned as it is."""
    rl = plan.job.rollouts if plan.job else None
    if rl is None:
        return plan
    rows, reward = ft.rollouts(cycle.engine_url, parent_name, rl)
    batch = plan.training.batch_size or 1
    training = replace(
        plan.training,
        examples=replace(plan.training.examples, pg=rows),
        steps=ft.steps_for(len(rows), batch, rl.epochs),
    )
    cycle.event(
        f"Sampled {rl.n} rollouts of each of {len(rl.prompts)} prompts: mean reward "
        f"{reward:.3f}; {len(rows)} rows carry signal",
        type="metrics",
        data={"rollout_reward": reward, "rows": len(rows)},
    )
    cycle.clock.lap("rollouts")
    return replace(plan, training=training)


def _anchor(cycle: _Cycle, plan: CyclePlan, parent_name: str) -> CyclePlan:
    """For an agent with an environment (and a KL term), the parent's answers to
    `ANCHOR_TASKS` training tasks join the KL term: the behaviour to keep even before the
    agent has traffic. Anchors obey the rule untouched traffic does: a task near a correction
    is what the correction means to change, so the KL term does not pin it."""
    environment = plan.evaluation.environment
    if not environment or plan.training.kl_coef <= 0:
        cycle.clock.lap("anchors")
        return plan
    played = trainer_client.play_environment(
        cycle.engine_url, parent_name, environment, "train", ANCHOR_TASKS, seed=plan.training.seed
    )
    corrected = [c.messages for c in plan.evaluation.corrected]
    anchors = [
        turn
        for turn, task in zip(played.turns, played.task_prompts, strict=True)
        if not near_any(task, corrected)
    ]
    cycle.beat(
        0.02,
        preserve_anchor_turns=len(anchors),
        preserve_anchor_turns_near=len(played.turns) - len(anchors),
    )
    cycle.clock.lap("anchors")
    examples = plan.training.examples
    training = replace(plan.training, examples=replace(examples, kl=[*examples.kl, *anchors]))
    return replace(plan, training=training)


def _train(cycle: _Cycle) -> tuple[list[trainer_client.TrainStep], Path]:
    """Train the candidate on the trainer service, into a staging folder of this attempt's
    own (a job left running by a worker that died never writes into the folder a later
    attempt publishes from)."""
    plan, steps = cycle.plan, cycle.plan.training.steps
    progress = [0.05]

    def on_step(record: trainer_client.TrainStep) -> None:
        progress[0] = 0.05 + 0.65 * record.step / steps
        if record.step % 2 == 0 or record.step == steps:
            cycle.beat(progress[0], last_losses=record.losses)
        if plan.job is not None:
            ft.step_event(plan.job.id, record, steps, plan.job.method)

    staging = cycle.settings.data_dir.resolve() / "staging" / str(plan.run_id) / uuid.uuid4().hex
    staging.mkdir(parents=True, exist_ok=True)
    history = trainer_client.train_adapter(
        f"cycle-{plan.run_id}",
        plan.training,
        tenant_id=plan.tenant_id,
        agent_id=plan.agent_id,
        write_to=staging,
        on_step=on_step,
        on_wait=lambda: cycle.beat(progress[0]),
    )
    cycle.clock.lap("train")
    return history, staging


def _publish(cycle: _Cycle, staging: Path) -> Candidate:
    """The trained adapter as a new candidate version of the agent, child of the parent."""
    plan = cycle.plan
    with unit_of_work() as session:
        tenant = session.get(Tenant, plan.tenant_id)
        assert tenant is not None
        version = registry.publish(
            session,
            cycle.settings,
            tenant,
            plan.agent_id,
            registry_copy(staging),
            parent_id=plan.parent.id if plan.parent else None,
            source="cycle",
        )
        run = CycleRepository(session).get_run(plan.tenant_id, plan.run_id)
        assert run is not None
        run.candidate_version_id = version.id
        run.heartbeat_at = datetime.now(UTC)
        candidate = Candidate(
            id=version.id,
            name=registry.adapter_name(plan.tenant_slug, plan.agent_name, version.number),
            path=version.path,
            label=f"{plan.agent_name}@v{version.number}",
        )
    cycle.event(f"Checkpoint created: {candidate.label}; evaluating it against its parent")
    cycle.beat(0.72)
    cycle.clock.lap("publish")
    return candidate


def _record(
    cycle: _Cycle,
    candidate: Candidate,
    signals: Signals,
    verdict: gate.Verdict,
    history: list[trainer_client.TrainStep],
) -> RunStatus:
    """The verdict on the version and the run: promoted, refused or kept as a candidate."""
    plan = cycle.plan
    final_losses = history[-1].losses if history else {}
    env = signals.environment
    with unit_of_work() as session:
        run = _locked_run(session, plan.tenant_id, plan.run_id)
        assert run is not None
        if run.status != RunStatus.running:  # cancelled, or failed at its deadline, meanwhile
            return RunStatus(run.status)
        versions = AdapterVersionRepository(session)
        version = versions.get(plan.tenant_id, candidate.id)
        assert version is not None
        version.metrics = {
            "signals": signals.record(),
            "gate": verdict.as_dict(),
            "losses": final_losses,
            **({"fine_tuning": ft.version_note(plan.job)} if plan.job else {}),
            **({"environment": _env_score(env, env.after).record()} if env else {}),
        }
        if env and plan.parent and not plan.evaluation.parent_environment:
            parent = versions.get(plan.tenant_id, plan.parent.id)
            if parent is not None:  # measured once per version, reused by later cycles
                parent.metrics = {
                    **(parent.metrics or {}),
                    "environment": _env_score(env, env.before).record(),
                }
        promoted = verdict.promote and plan.promote
        if promoted:
            registry.promote(session, plan.tenant_id, candidate.id)
        elif verdict.status == RunStatus.rejected:
            version.status = AdapterStatus.rejected
        run.status = verdict.status
        run.finished_at = datetime.now(UTC)
        run.progress = 1.0
        run.metrics = {
            **(run.metrics or {}),
            **plan.counts,
            **_legacy_scores(signals),
            "signals": signals.record(),
            "decision": verdict.reason,
            "failed_signal": verdict.failed_signal,
            "first_losses": history[0].losses if history else {},
            "final_losses": final_losses,
            "trained_steps": history[-1].step if history else 0,
            "trained_tokens": sum(h.tokens for h in history),
            "learned": bool(history and history[-1].learned),
            "timings_s": cycle.clock.laps,
        }
    ft.finished(
        plan.job.id if plan.job else None, verdict, signals, candidate.label, promoted=promoted
    )
    return verdict.status


def _load_parent(settings: Any, plan: CyclePlan) -> str:
    """Load the version the cycle starts from (the base model's identity adapter for an agent
    with no version yet) into the engines; returns its engine name."""
    if plan.parent:
        name = registry.adapter_name(plan.tenant_slug, plan.agent_name, plan.parent.number)
        registry.load_into_engines(settings, name, plan.parent.path)
        return name
    identity = write_identity_adapter(
        settings.base_model_path, settings.adapter_dir.resolve() / "_identity"
    )
    registry.load_into_engines(settings, IDENTITY_ADAPTER, str(identity))
    return IDENTITY_ADAPTER


EVALUATION_ATTEMPTS = 3


def _measure_until_done(cycle: _Cycle, parent_name: str, candidate: Candidate) -> Signals:
    """Load the candidate into the engines and `_measure`; again when the engine is gone (down
    as the candidate is published, or dying under the evaluation): wait until it answers
    (heartbeating, up to `cycle_engine_wait_s`), load both versions into it again, and measure
    from the start. The candidate is published already, so nothing is trained twice."""
    settings = cycle.settings
    for attempt in range(1, EVALUATION_ATTEMPTS + 1):
        try:
            if attempt > 1:  # a restarted engine holds neither version
                _load_parent(settings, cycle.plan)
            registry.load_into_engines(settings, candidate.name, candidate.path)
            return _measure(cycle, parent_name, candidate.name)
        except Exception as exc:
            if attempt == EVALUATION_ATTEMPTS or not trainer_client.is_engine_failure(exc):
                raise
            log.warning(
                "cycle %s: engine lost during evaluation (%s); waiting for it",
                cycle.plan.run_id,
                exc,
            )
            cycle.beat(0.72, evaluation_retries=attempt, last_engine_error=str(exc)[:300])
            _wait_for_engine(cycle, settings.cycle_engine_wait_s)
    raise AssertionError("unreachable")


def _wait_for_engine(cycle: _Cycle, wait_s: float) -> None:
    import httpx

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{cycle.engine_url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        cycle.beat(0.72)
        time.sleep(2)
    raise EngineUnavailable(
        f"the engine at {cycle.engine_url} did not come back within {wait_s:.0f} s"
    )


def _measure(cycle: _Cycle, parent: str, candidate: str) -> Signals:
    """Every gate signal, parent before and candidate after (see `app.cycles.gate`)."""
    engine_url, planned = cycle.engine_url, cycle.plan.evaluation
    rule = planned.rule

    def scored(payloads: list[Payload]) -> ScoreSignal:
        return ScoreSignal(
            n=len(payloads),
            before=evaluation.score(engine_url, parent, payloads),
            after=evaluation.score(engine_url, candidate, payloads),
        )

    job = ft.job_signals(engine_url, parent, candidate, cycle.plan)
    signals = Signals(
        corrections=job.corrections or scored(planned.corrections),
        held_out=scored(planned.held_out),
        validation=job.validation,
    )
    cycle.beat(0.78)
    cycle.clock.lap("evaluate_corrections")
    held, near = planned.held_back, planned.near
    pairs = evaluation.compare(engine_url, parent, candidate, held + near)
    grades = (
        trainer_client.grade_first_steps(planned.environment, held, pairs[: len(held)])
        if planned.environment
        else None
    )
    rate, changed, no_worse = evaluation.agreement(held, pairs[: len(held)], grades)
    copied = evaluation.copies(held + near, pairs, planned.corrected)
    signals.copies = CopiesSignal(
        **copied, near=len(near), allowed=copies_allowed(copied["before"], copied["n"])
    )
    signals.preservation = PreservationSignal(
        n=len(held),
        agreement=rate,
        min=rule.preserve_min,
        # The agreement measured must reach it too (`PromotionRule.preserve_tolerance`).
        floor=rule.preserve_min - rule.preserve_tolerance,
        min_examples=rule.min_examples,  # fewer: it does not count
        # What the gate compares with `min`: the most the agreement could be (90% confidence).
        upper_bound=None if rate is None else agreement_upper_bound(rate, len(held)),
        changed=changed,
        graded=None if grades is None else sum(g is not None for g in grades),
        no_worse=None if grades is None else no_worse,
    )
    cycle.beat(0.85)
    cycle.clock.lap("evaluate_preservation")
    n_env, environment = planned.environment_tasks, planned.environment
    if environment and n_env > 0:
        cached = planned.parent_environment
        if cached and cached.n == n_env and cached.name == environment:
            before = cached.reward
        else:
            before = trainer_client.play_environment(
                engine_url, parent, environment, "test", n_env
            ).reward
        cycle.beat(0.9)
        after = trainer_client.play_environment(
            engine_url, candidate, environment, "test", n_env
        ).reward
        signals.environment = EnvironmentSignal(
            name=environment, n=n_env, before=before, after=after
        )
        cycle.clock.lap("evaluate_environment")
    return signals


def _env_score(env: EnvironmentSignal, reward: float | None) -> EnvironmentScore:
    return EnvironmentScore(str(env.name), env.n, float(reward or 0.0))


def _legacy_scores(signals: Signals) -> dict[str, Any]:
    """The flat score names earlier releases reported (kept for scripts that read them)."""
    held_out = signals.held_out or ScoreSignal()
    corrections = signals.corrections or ScoreSignal()
    return {
        "eval_live": held_out.before,
        "eval_candidate": held_out.after,
        "new_live": corrections.before,
        "new_candidate": corrections.after,
    }


def registry_copy(folder: Path) -> Any:
    from app.adapters.storage import copy_from

    return copy_from(folder)
