"""One learning cycle: gather examples, train a candidate, evaluate it, promote or keep it."""

from __future__ import annotations

import logging
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app import trainer_client
from app.adapters import service as registry
from app.adapters.repository import AdapterVersionRepository
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.cycles import evaluation
from app.cycles.repository import CycleRepository
from app.cycles.service import get_schedule
from app.engine.identity import IDENTITY_ADAPTER, write_identity_adapter
from app.feedback.repository import ExampleRepository
from app.models import Agent, CycleRun, Tenant, TrainingExample
from app.models.enums import ExampleKind, ExampleSplit, RunStatus

log = logging.getLogger(__name__)


class CycleGone(Exception):
    """The cycle row no longer exists."""


def _heartbeat(tenant_id: uuid.UUID, run_id: uuid.UUID, progress: float, **metrics: Any) -> None:
    with unit_of_work() as session:
        run = CycleRepository(session).get_run(tenant_id, run_id)
        if run is None:
            return
        run.heartbeat_at = datetime.now(UTC)
        run.progress = progress
        if metrics:
            run.metrics = {**(run.metrics or {}), **metrics}


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
        plan = _plan(session, run, settings)
    try:
        status = _execute(tenant_id, run_id, plan, settings)
    except Exception as exc:
        log.exception("cycle %s failed", run_id)
        with unit_of_work() as session:
            run = CycleRepository(session).get_run(tenant_id, run_id)
            if run is not None:
                run.status = RunStatus.failed
                run.finished_at = datetime.now(UTC)
                run.error = f"{type(exc).__name__}: {exc}"[:4000]
        return RunStatus.failed
    return status


def _plan(session: Session, run: CycleRun, settings: Any) -> dict[str, Any]:
    """Everything the cycle needs, read in one transaction, as plain values."""
    tenant = session.get(Tenant, run.tenant_id)
    agent = session.get(Agent, run.agent_id)
    assert tenant is not None and agent is not None and agent.tenant_id == tenant.id
    schedule = get_schedule(session, tenant.id, agent.id)
    versions = AdapterVersionRepository(session)
    live = versions.get(tenant.id, agent.live_version_id) if agent.live_version_id else None
    run.base_version_id = live.id if live else None
    last = CycleRepository(session).last_finished(tenant.id, agent.id)
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
    chosen = new + replay
    return {
        "tenant_slug": tenant.slug,
        "agent_name": agent.name,
        "agent_id": agent.id,
        "lora": trainer_client.LoraShape(
            agent.lora_rank, agent.lora_alpha, tuple(agent.lora_target_modules)
        ),
        "live": (live.id, live.number, live.path) if live else None,
        "sft": [e.payload for e in chosen if e.kind == ExampleKind.sft],
        "dpo": [e.payload for e in chosen if e.kind == ExampleKind.preference],
        "new_sft": [e.payload for e in new if e.kind == ExampleKind.sft],
        "eval": evaluation_set,
        "mixture": dict(schedule.loss_mixture),
        "steps": schedule.steps,
        "lr": schedule.learning_rate,
        "kl_coef": schedule.kl_coef,
        "rule": dict(schedule.promotion_rule),
        "counts": {"new": len(new), "replay": len(replay), "eval": len(evaluation_set)},
    }


def _execute(
    tenant_id: uuid.UUID, run_id: uuid.UUID, plan: dict[str, Any], settings: Any
) -> RunStatus:
    if not plan["sft"] and not plan["dpo"]:
        with unit_of_work() as session:
            run = CycleRepository(session).get_run(tenant_id, run_id)
            assert run is not None
            run.status = RunStatus.rejected
            run.finished_at = datetime.now(UTC)
            run.progress = 1.0
            run.metrics = {**plan["counts"], "reason": "no new training examples"}
        return RunStatus.rejected
    steps = plan["steps"]
    progress = [0.0]

    def on_step(record: trainer_client.TrainStep) -> None:
        progress[0] = 0.8 * record.step / steps
        if record.step % 2 == 0 or record.step == steps:
            _heartbeat(tenant_id, run_id, progress[0], last_losses=record.losses)

    # A folder per attempt: a job left running by a worker that died never writes into the
    # folder a later attempt publishes from.
    staging = settings.data_dir.resolve() / "staging" / str(run_id) / uuid.uuid4().hex
    staging.mkdir(parents=True, exist_ok=True)
    history = trainer_client.train_adapter(
        f"cycle-{run_id}",
        plan["lora"],
        Path(plan["live"][2]) if plan["live"] else None,
        {"sft": plan["sft"], "dpo": plan["dpo"]},
        plan["mixture"],
        steps,
        plan["lr"],
        tenant_id=tenant_id,
        agent_id=plan["agent_id"],
        kl_coef=plan["kl_coef"],
        on_step=on_step,
        on_wait=lambda: _heartbeat(tenant_id, run_id, progress[0]),
        write_to=staging,
    )
    with unit_of_work() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        candidate = registry.publish(
            session, settings, tenant, plan["agent_id"], registry_copy(staging),
            parent_id=plan["live"][0] if plan["live"] else None, source="cycle",
        )  # fmt: skip
        run = CycleRepository(session).get_run(tenant_id, run_id)
        assert run is not None
        run.candidate_version_id = candidate.id
        candidate_name = registry.adapter_name(
            plan["tenant_slug"], plan["agent_name"], candidate.number
        )
        candidate_path, candidate_id = candidate.path, candidate.id
    registry.load_into_engines(settings, candidate_name, candidate_path)
    _heartbeat(tenant_id, run_id, 0.85)

    engine_url = registry.engine_urls(settings)[0].rstrip("/")
    if plan["live"]:
        live_name = registry.adapter_name(plan["tenant_slug"], plan["agent_name"], plan["live"][1])
        registry.load_into_engines(settings, live_name, plan["live"][2])
    else:
        identity = write_identity_adapter(
            settings.base_model_path, settings.adapter_dir.resolve() / "_identity"
        )
        registry.load_into_engines(settings, IDENTITY_ADAPTER, str(identity))
        live_name = IDENTITY_ADAPTER
    scores = {
        "eval_live": evaluation.score(engine_url, live_name, plan["eval"]),
        "eval_candidate": evaluation.score(engine_url, candidate_name, plan["eval"]),
        "new_live": evaluation.score(engine_url, live_name, plan["new_sft"]),
        "new_candidate": evaluation.score(engine_url, candidate_name, plan["new_sft"]),
    }
    promote, reason = _decide(scores, plan["rule"])
    final_losses = history[-1].losses if history else {}
    with unit_of_work() as session:
        run = CycleRepository(session).get_run(tenant_id, run_id)
        assert run is not None
        version = AdapterVersionRepository(session).get(tenant_id, candidate_id)
        assert version is not None
        version.metrics = {**scores, "losses": final_losses}
        if promote:
            registry.promote(session, tenant_id, candidate_id)
        else:
            from app.models.enums import AdapterStatus

            version.status = AdapterStatus.rejected
        run.status = RunStatus.succeeded if promote else RunStatus.rejected
        run.finished_at = datetime.now(UTC)
        run.progress = 1.0
        run.metrics = {
            **(run.metrics or {}), **plan["counts"], **scores, "decision": reason,
            "first_losses": history[0].losses if history else {}, "final_losses": final_losses,
        }  # fmt: skip
    return RunStatus.succeeded if promote else RunStatus.rejected


def registry_copy(folder: Path) -> Any:
    from app.adapters.storage import copy_from

    return copy_from(folder)


def _decide(scores: dict[str, float | None], rule: dict[str, Any]) -> tuple[bool, str]:
    """The promotion rule: no held-out regression beyond the tolerance, and (if required)
    better on the new examples than the live version."""
    tolerance = float(rule.get("max_regression", 0.0))
    live, cand = scores["eval_live"], scores["eval_candidate"]
    if live is not None and cand is not None and cand < live - tolerance - 1e-9:
        return False, f"held-out score fell from {live:.3f} to {cand:.3f}"
    if rule.get("require_improvement", True):
        new_live, new_cand = scores["new_live"], scores["new_candidate"]
        if new_live is not None and new_cand is not None and new_cand <= new_live:
            return False, f"no improvement on new examples ({new_live:.3f} -> {new_cand:.3f})"
    return True, "promoted: no regression on held-out examples"
