"""The plan stage: everything a cycle needs, read in one transaction into a `CyclePlan`."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.adapters.repository import AdapterVersionRepository
from app.agents.repository import AgentRepository
from app.cycles.repository import CycleRepository
from app.cycles.service import effective_schedule, get_schedule
from app.cycles.stages import (
    CorrectedAnswer,
    CyclePlan,
    EnvironmentScore,
    EvaluationPlan,
    Version,
)
from app.cycles.untouched import away_pairs, split_untouched
from app.feedback.repository import ExampleRepository
from app.fine_tuning.cycle import job_plan, steps_for
from app.models import CycleRun, Tenant, TrainingExample
from app.models.enums import ExampleKind, ExampleSplit
from app.training.client import (
    LEARNED_MARGIN,
    Examples,
    LoraShape,
    TrainingRequest,
    share,
)


def split_examples(
    examples: list[TrainingExample], since: datetime | None, replay_share: float, seed: int
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(new since the last promoted cycle, a replay sample of older ones)."""
    new = [e for e in examples if since is None or e.created_at > since]
    old = [e for e in examples if since is not None and e.created_at <= since]
    want = (
        round(len(new) * replay_share / max(1e-9, 1 - replay_share))
        if replay_share < 1
        else len(old)
    )
    replay = random.Random(seed).sample(old, min(len(old), max(want, 0)))
    return new, replay


EPISODE_TURNS = 4
"""Answers an environment episode asks for at most (`trainer.envs.runner.DEFAULT_MAX_TURNS`)."""


def deadline_s(plan: CyclePlan, settings: Any) -> float:
    """How long the cycle may run, made from its own work: its training steps (a reinforcement
    job's, from its rollouts), and the answers its evaluation asks of the parent and the
    candidate (each check's prompts; each environment task an episode of several turns), each
    at a generous rate, plus a wait for a lost engine. Past it, the reaper fails the run."""
    evaluation, steps, sampled = plan.evaluation, plan.training.steps, 0
    rollouts = plan.job.rollouts if plan.job else None
    if rollouts is not None:
        sampled = rollouts.n * len(rollouts.prompts)
        steps = max(steps, steps_for(sampled, plan.training.batch_size or 1, rollouts.epochs))
    checked = (
        len(evaluation.corrections)
        + len(evaluation.held_out)
        + len(evaluation.validation)
        + len(evaluation.held_back)
        + len(evaluation.near)
        + EPISODE_TURNS * evaluation.environment_tasks
    )
    return (
        settings.cycle_deadline_base_s
        + settings.cycle_deadline_step_s * steps
        + settings.cycle_deadline_prompt_s * (2 * checked + sampled)
        + settings.cycle_engine_wait_s
    )


def _payloads(examples: list[TrainingExample], kind: ExampleKind) -> list[dict[str, Any]]:
    return [e.payload for e in examples if e.kind == kind]


def preferences_to_train(
    chosen: list[TrainingExample], train: list[TrainingExample]
) -> list[dict[str, Any]]:
    """The preference pairs a cycle trains: every pair but those a correction made (corrected
    over original). A correction's SFT example already teaches its answer; training its pair
    with DPO on top changed 6 to 11 points more of the untouched answers and learned nothing
    more (`bench/results/preservation_drift_dpo.json`, docs/LEARNING.md). The pairs stay
    stored, for export and fine-tuning files."""
    corrected = {e.feedback_id for e in train if e.kind == ExampleKind.sft and e.feedback_id}
    return [
        e.payload
        for e in chosen
        if e.kind == ExampleKind.preference
        and (e.feedback_id is None or e.feedback_id not in corrected)
    ]


def plan_cycle(session: Session, run: CycleRun, settings: Any) -> CyclePlan:
    """The cycle's plan: the agent's feedback to train on (new since the last cycle that went
    live, plus a replay of older examples), its untouched traffic to keep, and what the gate
    measures; for a fine-tuning job, its file's lines instead of the feedback."""
    tenant = session.get(Tenant, run.tenant_id)
    agent = AgentRepository(session).get(run.tenant_id, run.agent_id)
    assert tenant is not None and agent is not None and agent.tenant_id == tenant.id
    schedule = effective_schedule(get_schedule(session, tenant.id, agent.id))
    versions = AdapterVersionRepository(session)
    live = versions.get(tenant.id, agent.live_version_id) if agent.live_version_id else None
    # Examples are new until a cycle that trained them goes live: a refused cycle's
    # corrections are trained again, in full, by the next one.
    last = CycleRepository(session).last_promoted(tenant.id, agent.id)
    examples = ExampleRepository(session)
    train = list(examples.for_agent(tenant.id, agent.id, split=ExampleSplit.train))
    seed = run.id.int % 2**31
    new, replay = split_examples(
        train, last.started_at if last else None, schedule.replay_share, seed=seed
    )
    held_out = [
        e.payload
        for e in examples.for_agent(
            tenant.id, agent.id, split=ExampleSplit.eval, kinds=[ExampleKind.sft]
        )
    ]
    job = job_plan(session, run, agent, schedule.learning_rate)
    corrections = [
        e.payload for e in examples.for_agent(tenant.id, agent.id, kinds=[ExampleKind.sft])
    ]
    corrected = [c["messages"][:-1] for c in corrections] + (job.covered if job else [])
    untouched = split_untouched(session, tenant.id, agent.id, corrected)
    chosen = new + replay
    rule = schedule.promotion_rule
    environment = (agent.settings or {}).get("environment")
    parent = Version(live.id, live.number, live.path) if live else None
    parent_environment = EnvironmentScore.read(
        (live.metrics or {}).get("environment") if live else None
    )
    training = TrainingRequest(
        lora=LoraShape(agent.lora_rank, agent.lora_alpha, tuple(agent.lora_target_modules)),
        parent_dir=None,
        examples=Examples(
            sft=_payloads(chosen, ExampleKind.sft),
            dpo=preferences_to_train(chosen, train),
            pg=_payloads(chosen, ExampleKind.reward),
            kl=untouched.kl_rows,
            away=away_pairs(untouched.near_train, corrections),
        ),
        mixture={**schedule.loss_mixture, "away": schedule.copy_guard},
        steps=schedule.steps,
        lr=schedule.learning_rate,
        kl_coef=schedule.kl_coef,
        weight=share(tenant.slug, agent.settings),
        stop_margin=LEARNED_MARGIN,
        seed=seed,
    )
    evaluation = EvaluationPlan(
        rule=rule,
        corrections=_payloads(new, ExampleKind.sft),
        held_out=held_out,
        held_back=untouched.held_back,
        near=untouched.near,
        # What a copy would be: each correction's answer, and the conversation it answers.
        corrected=[CorrectedAnswer(c["messages"][:-1], c["messages"][-1]) for c in corrections],
        environment=environment,
        environment_tasks=rule.environment_tasks if environment else 0,
        parent_environment=parent_environment,
    )
    counts = {
        "new": len(new),
        "replay": len(replay),
        "eval": len(held_out),
        "preserve_train": len(untouched.kl_rows),
        "preserve_held_back": len(untouched.held_back),
        "preserve_near_corrections": untouched.near_seen,
        "preserve_near_held_back": len(untouched.near),
        "away_pairs": len(training.examples.away),
    }
    if job is not None:
        # A job trains its file's lines with its method's loss alone; what to keep (the KL
        # term) and every gate signal stay, and its validation file adds one.
        training = replace(
            training,
            examples=replace(training.examples, sft=job.sft, dpo=job.dpo, pg=[], away=[]),
            mixture=job.mixture,
            steps=job.steps,
            lr=job.lr,
            batch_size=job.batch_size,
            dpo_beta=job.dpo_beta,
            seed=job.seed,
            stop_margin=None,
        )
        evaluation = replace(evaluation, corrections=job.corrections, validation=job.validation)
        counts = {**counts, **job.counts}
        if job.parent is not None:
            parent = job.parent
            evaluation = replace(evaluation, parent_environment=job.parent_environment)
    run.base_version_id = parent.id if parent else None
    return CyclePlan(
        tenant_id=tenant.id,
        run_id=run.id,
        agent_id=agent.id,
        tenant_slug=tenant.slug,
        agent_name=agent.name,
        parent=parent,
        training=replace(training, parent_dir=Path(parent.path) if parent else None),
        evaluation=evaluation,
        counts=counts,
        job=job.job if job else None,
    )
