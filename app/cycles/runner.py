"""One learning cycle: gather examples, train a candidate, evaluate it, promote or keep it."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.adapters import service as registry
from app.adapters.repository import AdapterVersionRepository
from app.agents.repository import AgentRepository
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.core.errors import EngineUnavailable
from app.cycles import evaluation, gate
from app.cycles.repository import CycleRepository
from app.cycles.service import effective_schedule, get_schedule
from app.cycles.untouched import near_any, split_untouched
from app.feedback.repository import ExampleRepository
from app.fine_tuning import cycle as ft
from app.fine_tuning.cycle import job_plan
from app.fine_tuning.service import start_waiting
from app.models import CycleRun, Tenant, TrainingExample
from app.models.enums import AdapterStatus, ExampleKind, ExampleSplit, RunStatus
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


def _split_examples(
    examples: list[TrainingExample], since: datetime | None, replay_share: float, seed: int
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(new since the last cycle, replay sample of older ones)."""
    new = [e for e in examples if since is None or e.created_at > since]
    old = [e for e in examples if since is not None and e.created_at <= since]
    want = (
        round(len(new) * replay_share / max(1e-9, 1 - replay_share))
        if replay_share < 1
        else len(old)
    )
    replay = random.Random(seed).sample(old, min(len(old), max(want, 0)))
    return new, replay


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
            plan = _plan(session, run, settings)
    except Exception as exc:  # a plan that cannot be made fails the run, never blocks the agent
        log.exception("cycle %s could not be planned", run_id)
        _fail(tenant_id, run_id, exc)
        return RunStatus.failed
    try:
        # Four beats per stale period (at most every 10 s): a slow step never looks dead.
        with _beating(tenant_id, run_id, min(10.0, settings.cycle_stale_after_s / 4)):
            status = _execute(tenant_id, run_id, plan, settings)
    except Exception as exc:
        log.exception("cycle %s failed", run_id)
        status = _fail(tenant_id, run_id, exc)
        if status == RunStatus.failed:
            job_id = (plan or {}).get("job_id")
            ft.event(job_id, f"The job failed: {type(exc).__name__}: {exc}", level="error")
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
        if run.status == RunStatus.cancelled:
            return RunStatus.cancelled
        run.status = RunStatus.failed
        run.finished_at = datetime.now(UTC)
        run.error = f"{type(exc).__name__}: {exc}"[:4000]
    return RunStatus.failed


def _cancelled(tenant_id: uuid.UUID, run_id: uuid.UUID) -> bool:
    with unit_of_work() as session:
        run = CycleRepository(session).get_run(tenant_id, run_id)
        return run is None or run.status == RunStatus.cancelled


ANCHOR_TASKS = 32
"""Environment tasks (train split) whose parent answers join the KL term, for an agent with an
environment: the behaviour to keep even before the agent has any traffic."""


def _plan(session: Session, run: CycleRun, settings: Any) -> dict[str, Any]:
    """Everything the cycle needs, read in one transaction, as plain values."""
    tenant = session.get(Tenant, run.tenant_id)
    agent = AgentRepository(session).get(run.tenant_id, run.agent_id)
    assert tenant is not None and agent is not None and agent.tenant_id == tenant.id
    schedule = effective_schedule(get_schedule(session, tenant.id, agent.id))
    versions = AdapterVersionRepository(session)
    live = versions.get(tenant.id, agent.live_version_id) if agent.live_version_id else None
    run.base_version_id = live.id if live else None
    # Examples are new until a cycle that trained them goes live: a refused cycle's
    # corrections are trained again, in full, by the next one.
    last = CycleRepository(session).last_promoted(tenant.id, agent.id)
    examples = ExampleRepository(session)
    train = list(examples.for_agent(tenant.id, agent.id, split=ExampleSplit.train))
    new, replay = _split_examples(
        train, last.started_at if last else None, schedule.replay_share, seed=run.id.int % 2**31
    )
    evaluation_set = [
        e.payload
        for e in examples.for_agent(
            tenant.id, agent.id, split=ExampleSplit.eval, kinds=[ExampleKind.sft]
        )
    ]
    job = job_plan(session, run, agent, schedule.learning_rate)
    corrections = [
        e.payload for e in examples.for_agent(tenant.id, agent.id, kinds=[ExampleKind.sft])
    ]
    corrected = [c["messages"][:-1] for c in corrections] + (job["covered"] if job else [])
    untouched = split_untouched(session, tenant.id, agent.id, corrected)
    chosen = new + replay
    rule = schedule.promotion_rule.model_dump()
    environment = (agent.settings or {}).get("environment")
    parent_env = (live.metrics or {}).get("environment") if live else None
    plan: dict[str, Any] = {
        "tenant_slug": tenant.slug,
        "agent_name": agent.name,
        "agent_id": agent.id,
        "lora": trainer_client.LoraShape(
            agent.lora_rank, agent.lora_alpha, tuple(agent.lora_target_modules)
        ),
        "live": (live.id, live.number, live.path) if live else None,
        "sft": [e.payload for e in chosen if e.kind == ExampleKind.sft],
        "dpo": [e.payload for e in chosen if e.kind == ExampleKind.preference],
        "pg": [e.payload for e in chosen if e.kind == ExampleKind.reward],
        "kl": untouched.kl_rows,
        "held_back": untouched.held_back,
        "near": untouched.near,
        # What a copy would be: each correction's answer, and the conversation it answers.
        "corrected_answers": [
            {"messages": c["messages"][:-1], "answer": c["messages"][-1]} for c in corrections
        ],
        "new_sft": [e.payload for e in new if e.kind == ExampleKind.sft],
        "eval": evaluation_set,
        "environment": environment,
        "environment_tasks": int(rule.get("environment_tasks", 200)) if environment else 0,
        "parent_environment": parent_env,
        "mixture": dict(schedule.loss_mixture),
        "steps": schedule.steps,
        "lr": schedule.learning_rate,
        "kl_coef": schedule.kl_coef,
        "rule": rule,
        "seed": run.id.int % 2**31,
        "stop_margin": trainer_client.LEARNED_MARGIN,
        "weight": trainer_client.share(tenant.slug, agent.settings),
        "counts": {
            "new": len(new),
            "replay": len(replay),
            "eval": len(evaluation_set),
            "preserve_train": len(untouched.kl_rows),
            "preserve_held_back": len(untouched.held_back),
            "preserve_near_corrections": untouched.near_seen,
            "preserve_near_held_back": len(untouched.near),
        },
    }
    if job is None:
        return {**plan, "job_id": None}
    return {**plan, **job, "counts": {**plan["counts"], **job["counts"]}}


def _finish(
    tenant_id: uuid.UUID, run_id: uuid.UUID, status: RunStatus, **metrics: Any
) -> RunStatus:
    with unit_of_work() as session:
        run = _locked_run(session, tenant_id, run_id)
        assert run is not None
        if run.status == RunStatus.cancelled:
            return RunStatus.cancelled
        run.status = status
        run.finished_at = datetime.now(UTC)
        run.progress = 1.0
        run.metrics = {**(run.metrics or {}), **metrics}
    return status


def _execute(
    tenant_id: uuid.UUID, run_id: uuid.UUID, plan: dict[str, Any], settings: Any
) -> RunStatus:
    engine_url = registry.engine_urls(settings)[0].rstrip("/")
    clock = _Clock()
    parent_name = _load_parent(settings, plan)
    job_id = plan["job_id"]
    if plan.get("rl"):
        plan["pg"], reward = ft.rollouts(engine_url, parent_name, plan["rl"])
        plan["steps"] = ft.steps_for(len(plan["pg"]), plan["batch_size"], plan["rl"]["epochs"])
        ft.event(
            job_id,
            f"Sampled {plan['rl']['n']} rollouts of each of "
            f"{len(plan['rl']['prompts'])} prompts: mean reward {reward:.3f}; "
            f"{len(plan['pg'])} rows carry signal",
            type="metrics",
            data={"rollout_reward": reward, "rows": len(plan["pg"])},
        )
        clock.lap("rollouts")
    if not plan["sft"] and not plan["dpo"] and not plan["pg"]:
        reason = (
            "no rollouts to learn from: every prompt's samples scored the same"
            if plan.get("rl")
            else "no new training examples"
        )
        ft.event(job_id, f"The job ended: {reason}", level="error")
        return _finish(
            tenant_id, run_id, RunStatus.rejected, **plan["counts"], reason=reason, decision=reason
        )
    weighed = {k: len(plan[k]) for k in ("sft", "dpo", "pg") if plan[k]}
    if all(float(plan["mixture"].get(k, 0.0)) <= 0 for k in weighed):
        reason = (
            "nothing to train: every new example has zero weight in the loss mixture ("
            + ", ".join(
                f"{n} {k} at {float(plan['mixture'].get(k, 0.0)):g}" for k, n in weighed.items()
            )
            + "); give that loss a weight in the schedule's loss_mixture"
        )
        ft.event(job_id, f"The job ended: {reason}", level="error")
        return _finish(
            tenant_id, run_id, RunStatus.rejected, **plan["counts"], reason=reason, decision=reason
        )
    ft.event(job_id, f"Fine-tuning job started: {plan['steps']} steps")
    anchors: list[dict[str, Any]] = []
    if plan["environment"] and plan["kl_coef"] > 0:
        played = trainer_client.play_environment(
            engine_url, parent_name, plan["environment"], "train", ANCHOR_TASKS, seed=plan["seed"]
        )
        # Anchors obey the rule untouched traffic does: a task near a correction is what the
        # correction means to change, so the KL term does not pin it to the parent.
        corrected = [c["messages"] for c in plan["corrected_answers"]]
        anchors = [
            turn
            for turn, task in zip(played.turns, played.task_prompts, strict=True)
            if not near_any(task, corrected)
        ]
        _heartbeat(
            tenant_id,
            run_id,
            0.02,
            preserve_anchor_turns=len(anchors),
            preserve_anchor_turns_near=len(played.turns) - len(anchors),
        )
    clock.lap("anchors")
    steps = plan["steps"]
    progress = [0.05]

    def on_step(record: trainer_client.TrainStep) -> None:
        progress[0] = 0.05 + 0.65 * record.step / steps
        if record.step % 2 == 0 or record.step == steps:
            _heartbeat(tenant_id, run_id, progress[0], last_losses=record.losses)
        if job_id is not None:
            ft.step_event(job_id, record, steps, plan["method"])

    if _cancelled(tenant_id, run_id):  # cancelled before training began
        return RunStatus.cancelled
    # A folder per attempt: a job left running by a worker that died never writes into the
    # folder a later attempt publishes from.
    staging = settings.data_dir.resolve() / "staging" / str(run_id) / uuid.uuid4().hex
    staging.mkdir(parents=True, exist_ok=True)
    history = trainer_client.train_adapter(
        f"cycle-{run_id}",
        plan["lora"],
        Path(plan["live"][2]) if plan["live"] else None,
        {"sft": plan["sft"], "dpo": plan["dpo"], "pg": plan["pg"], "kl": plan["kl"] + anchors},
        plan["mixture"],
        steps,
        plan["lr"],
        tenant_id=tenant_id,
        agent_id=plan["agent_id"],
        kl_coef=plan["kl_coef"],
        weight=plan["weight"],
        stop_margin=plan["stop_margin"],
        batch_size=plan.get("batch_size"),
        dpo_beta=plan.get("dpo_beta", 0.1),
        seed=plan["seed"],
        on_step=on_step,
        on_wait=lambda: _heartbeat(tenant_id, run_id, progress[0]),
        write_to=staging,
    )
    clock.lap("train")
    if _cancelled(tenant_id, run_id):  # cancelled as training ended: nothing is published
        return RunStatus.cancelled
    with unit_of_work() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        candidate = registry.publish(
            session,
            settings,
            tenant,
            plan["agent_id"],
            registry_copy(staging),
            parent_id=plan["live"][0] if plan["live"] else None,
            source="cycle",
        )
        run = CycleRepository(session).get_run(tenant_id, run_id)
        assert run is not None
        run.candidate_version_id = candidate.id
        run.heartbeat_at = datetime.now(UTC)
        candidate_name = registry.adapter_name(
            plan["tenant_slug"], plan["agent_name"], candidate.number
        )
        candidate_path, candidate_id = candidate.path, candidate.id
        label = f"{plan['agent_name']}@v{candidate.number}"
    ft.event(job_id, f"Checkpoint created: {label}; evaluating it against its parent")
    _heartbeat(tenant_id, run_id, 0.72)
    clock.lap("publish")
    signals = _measure_until_done(
        tenant_id,
        run_id,
        settings,
        engine_url,
        (parent_name, plan),
        (candidate_name, candidate_path),
        clock,
    )
    verdict = gate.decide(signals, plan["rule"])
    final_losses = history[-1].losses if history else {}
    with unit_of_work() as session:
        run = _locked_run(session, tenant_id, run_id)
        assert run is not None
        if run.status == RunStatus.cancelled:  # cancelled while it was evaluated
            return RunStatus.cancelled
        versions = AdapterVersionRepository(session)
        version = versions.get(tenant_id, candidate_id)
        assert version is not None
        env = signals.get("environment")
        version.metrics = {
            "signals": signals,
            "gate": verdict.as_dict(),
            "losses": final_losses,
            **({"fine_tuning": ft.version_note(plan)} if job_id else {}),
            **({"environment": _env_cache(env, "after")} if env else {}),
        }
        if env and plan["live"] and not plan["parent_environment"]:
            parent = versions.get(tenant_id, plan["live"][0])
            if parent is not None:  # measured once per version, reused by later cycles
                parent.metrics = {
                    **(parent.metrics or {}),
                    "environment": _env_cache(env, "before"),
                }
        if verdict.promote and plan.get("promote", True):
            registry.promote(session, tenant_id, candidate_id)
        elif verdict.status == RunStatus.rejected:
            version.status = AdapterStatus.rejected
        run.status = verdict.status
        run.finished_at = datetime.now(UTC)
        run.progress = 1.0
        run.metrics = {
            **(run.metrics or {}),
            **plan["counts"],
            **_legacy_scores(signals),
            "signals": signals,
            "decision": verdict.reason,
            "failed_signal": verdict.failed_signal,
            "first_losses": history[0].losses if history else {},
            "final_losses": final_losses,
            "trained_steps": history[-1].step if history else 0,
            "trained_tokens": sum(h.tokens for h in history),
            "learned": bool(history and history[-1].learned),
            "timings_s": clock.laps,
        }
    ft.finished(
        job_id, verdict, signals, label, promoted=verdict.promote and plan.get("promote", True)
    )
    return verdict.status


class _Clock:
    """Seconds spent in each phase of a cycle, for its metrics."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


def _load_parent(settings: Any, plan: dict[str, Any]) -> str:
    """Load the version the cycle starts from (the base model's identity adapter for an agent
    with no version yet) into the engines; returns its engine name."""
    if plan["live"]:
        name = registry.adapter_name(plan["tenant_slug"], plan["agent_name"], plan["live"][1])
        registry.load_into_engines(settings, name, plan["live"][2])
        return name
    identity = write_identity_adapter(
        settings.base_model_path, settings.adapter_dir.resolve() / "_identity"
    )
    registry.load_into_engines(settings, IDENTITY_ADAPTER, str(identity))
    return IDENTITY_ADAPTER


EVALUATION_ATTEMPTS = 3


def _measure_until_done(
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    settings: Any,
    engine_url: str,
    parent: tuple[str, dict[str, Any]],
    candidate: tuple[str, str],
    clock: _Clock,
) -> dict[str, dict[str, Any]]:
    """Load the candidate into the engines and `_measure`; again when the engine is gone (down
    as the candidate is published, or dying under the evaluation): wait until it answers
    (heartbeating, up to `cycle_engine_wait_s`), load both versions into it again, and measure
    from the start. The candidate is published already, so nothing is trained twice."""
    parent_name, plan = parent
    candidate_name, candidate_path = candidate
    for attempt in range(1, EVALUATION_ATTEMPTS + 1):
        try:
            if attempt > 1:  # a restarted engine holds neither version
                _load_parent(settings, plan)
            registry.load_into_engines(settings, candidate_name, candidate_path)
            return _measure(tenant_id, run_id, engine_url, parent_name, candidate_name, plan, clock)
        except Exception as exc:
            if attempt == EVALUATION_ATTEMPTS or not trainer_client.is_engine_failure(exc):
                raise
            log.warning("cycle %s: engine lost during evaluation (%s); waiting for it", run_id, exc)
            _heartbeat(
                tenant_id,
                run_id,
                0.72,
                evaluation_retries=attempt,
                last_engine_error=str(exc)[:300],
            )
            _wait_for_engine(tenant_id, run_id, engine_url, settings.cycle_engine_wait_s)
    raise AssertionError("unreachable")


def _wait_for_engine(
    tenant_id: uuid.UUID, run_id: uuid.UUID, engine_url: str, wait_s: float
) -> None:
    import httpx

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{engine_url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        _heartbeat(tenant_id, run_id, 0.72)
        time.sleep(2)
    raise EngineUnavailable(f"the engine at {engine_url} did not come back within {wait_s:.0f} s")


def _measure(
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    engine_url: str,
    parent: str,
    candidate: str,
    plan: dict[str, Any],
    clock: _Clock,
) -> dict[str, dict[str, Any]]:
    """Every gate signal, parent before and candidate after (see `app.cycles.gate`)."""
    signals: dict[str, dict[str, Any]] = {}
    for name, payloads in (("corrections", plan["new_sft"]), ("held_out", plan["eval"])):
        signals[name] = {
            "n": len(payloads),
            "before": evaluation.score(engine_url, parent, payloads),
            "after": evaluation.score(engine_url, candidate, payloads),
        }
    signals.update(ft.job_signals(engine_url, parent, candidate, plan))
    _heartbeat(tenant_id, run_id, 0.78)
    clock.lap("evaluate_corrections")
    held, near = plan["held_back"], plan["near"]
    pairs = evaluation.compare(engine_url, parent, candidate, held + near)
    rate, changed = evaluation.agreement(held, pairs[: len(held)])
    copied = evaluation.copies(held + near, pairs, plan["corrected_answers"])
    signals["copies"] = {
        **copied,
        "near": len(near),
        "allowed": gate.copies_allowed(copied["before"], copied["n"]),
    }
    signals["preservation"] = {
        "n": len(held),
        "agreement": rate,
        "min": float(plan["rule"].get("preserve_min", 0.95)),
        # The agreement measured must reach it too (`PromotionRule.preserve_tolerance`).
        "floor": float(plan["rule"].get("preserve_min", 0.95))
        - float(plan["rule"].get("preserve_tolerance", 0.05)),
        "min_examples": int(plan["rule"].get("min_examples", 5)),  # fewer: it does not count
        # What the gate compares with `min`: the most the agreement could be (90% confidence).
        "upper_bound": None if rate is None else gate.agreement_upper_bound(rate, len(held)),
        "changed": changed,
    }
    _heartbeat(tenant_id, run_id, 0.85)
    clock.lap("evaluate_preservation")
    n_env = plan["environment_tasks"]
    if plan["environment"] and n_env > 0:
        cached = plan["parent_environment"]
        if cached and cached.get("n") == n_env and cached.get("name") == plan["environment"]:
            before = float(cached["reward"])
        else:
            before = trainer_client.play_environment(
                engine_url, parent, plan["environment"], "test", n_env
            ).reward
        _heartbeat(tenant_id, run_id, 0.9)
        after = trainer_client.play_environment(
            engine_url, candidate, plan["environment"], "test", n_env
        ).reward
        signals["environment"] = {
            "name": plan["environment"],
            "n": n_env,
            "before": before,
            "after": after,
        }
        clock.lap("evaluate_environment")
    return signals


def _env_cache(env: dict[str, Any], side: str) -> dict[str, Any]:
    return {"name": env["name"], "n": env["n"], "reward": env[side]}


def _legacy_scores(signals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The flat score names earlier releases reported (kept for scripts that read them)."""
    return {
        "eval_live": signals["held_out"]["before"],
        "eval_candidate": signals["held_out"]["after"],
        "new_live": signals["corrections"]["before"],
        "new_candidate": signals["corrections"]["after"],
    }


def registry_copy(folder: Path) -> Any:
    from app.adapters.storage import copy_from

    return copy_from(folder)
