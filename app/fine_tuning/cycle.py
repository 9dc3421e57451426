"""A fine-tuning job as a learning cycle: what it trains on, what the gate measures, the
reinforcement rollouts, and the events the job's log shows.

The cycle runner (`app.cycles.runner`) plans every cycle the same way, then lets a job's plan
replace what to train on: the file's lines instead of the agent's feedback, the method's loss
alone, ``n_epochs`` x ``ceil(lines / batch_size)`` steps at the schedule's learning rate times
the multiplier, no early stop. What to keep (the KL term on the agent's untouched traffic) and
every gate signal stay, and the validation file adds the ``validation`` signal."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.adapters.repository import AdapterVersionRepository
from app.adapters.signals import ScoreSignal, Signals
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.core.errors import NotFound
from app.core.public_ids import job_public_id
from app.cycles.stages import (
    CyclePlan,
    EnvironmentScore,
    Job,
    Payload,
    Rollouts,
    Version,
)
from app.files import service as files
from app.fine_tuning import graders
from app.fine_tuning.repository import FineTuningRepository
from app.fine_tuning.service import record_event
from app.models import Agent, CycleRun
from app.training import client as trainer_client

TRAIN_ROWS_MEASURED = 32
"""Training lines the ``corrections`` signal checks (a seeded sample of bigger files)."""
VALIDATION_ROWS = 64
"""Validation lines the ``validation`` signal checks."""
SAMPLES_PER_PROMPT = 4
"""Rollouts per prompt of a reinforcement job at ``compute_multiplier`` 1."""
SAMPLE_MAX_TOKENS = 96

LOSS_OF = {"supervised": "sft", "dpo": "dpo", "reinforcement": "pg"}


def _target(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A line as an example to answer: a chat line as is; a preference line's input with its
    preferred output."""
    if kind == "dpo":
        return {"messages": [*payload["messages"], payload["chosen"]], "tools": payload["tools"]}
    return payload


@dataclass(frozen=True)
class JobPlan:
    """What a fine-tuning job changes in its cycle's plan (`app.cycles.plan.plan_cycle`)."""

    job: Job
    sft: list[Payload]
    dpo: list[Payload]
    mixture: dict[str, float]
    steps: int
    lr: float
    batch_size: int
    dpo_beta: float
    seed: int
    covered: list[list[Payload]]
    """The prompts of its training lines: like corrected prompts, they (and prompts near
    them) are what the job means to change, so the agent's traffic on them is neither pinned
    by the KL term nor counted against preservation (prompts near them are held back for the
    copy check, `app.cycles.untouched`)."""
    corrections: list[Payload]
    """Training lines the ``corrections`` signal measures (a reinforcement job: none; its
    rollouts' ``measured`` prompts are graded instead)."""
    validation: list[Payload]
    counts: dict[str, int]
    parent: Version | None = None
    """The job's ``base_version`` when it names one, instead of the live version."""
    parent_environment: EnvironmentScore | None = None


def job_plan(session: Session, run: CycleRun, agent: Agent, learning_rate: float) -> JobPlan | None:
    """The changes a fine-tuning job makes to its cycle's plan; None for an ordinary cycle."""
    job = FineTuningRepository(session).for_run(run.tenant_id, run.id)
    if job is None:
        return None
    kind = job.method["type"]
    hp = job.method[kind]["hyperparameters"]
    if job.training_file_id is None:
        raise NotFound("the training file was deleted", param="training_file")
    _, rows = files.payloads(session, run.tenant_id, job.training_file_id)
    validation = (
        files.payloads(session, run.tenant_id, job.validation_file_id)[1]
        if job.validation_file_id
        else []
    )
    rng = random.Random(job.seed)
    measured = rng.sample(rows, min(TRAIN_ROWS_MEASURED, len(rows)))
    validation = rng.sample(validation, min(VALIDATION_ROWS, len(validation)))
    batch = int(hp["batch_size"])
    rollouts = None
    if kind == "reinforcement":
        rollouts = Rollouts(
            grader=job.method[kind]["grader"],
            prompts=rows,
            n=max(2, min(16, round(SAMPLES_PER_PROMPT * float(hp["compute_multiplier"])))),
            epochs=int(hp["n_epochs"]),  # steps follow the rollout rows, once sampled
            measured=measured,
        )
    parent = parent_environment = None
    if job.base_version_id is not None:
        base = AdapterVersionRepository(session).get(run.tenant_id, job.base_version_id)
        if base is not None:
            parent = Version(base.id, base.number, base.path)
            parent_environment = EnvironmentScore.read((base.metrics or {}).get("environment"))
    return JobPlan(
        job=Job(
            id=job.id,
            method=kind,
            suffix=job.suffix,
            promote=bool((agent.settings or {}).get("fine_tuning_promotes", True)),
            rollouts=rollouts,
        ),
        sft=rows if kind == "supervised" else [],
        dpo=rows if kind == "dpo" else [],
        mixture={LOSS_OF[kind]: 1.0},
        steps=steps_for(len(rows), batch, int(hp["n_epochs"])),
        lr=learning_rate * float(hp["learning_rate_multiplier"]),
        batch_size=batch,
        dpo_beta=float(hp.get("beta", 0.1)),
        seed=job.seed,
        covered=[p["messages"] if kind != "supervised" else p["messages"][:-1] for p in rows],
        corrections=[] if rollouts else [_target(kind, p) for p in measured],
        validation=validation if rollouts else [_target(kind, p) for p in validation],
        counts={"new": len(rows), "replay": 0, "validation": len(validation)},
        parent=parent,
        parent_environment=parent_environment,
    )


def steps_for(rows: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of ``epochs`` passes over ``rows`` in batches of ``batch_size``."""
    return math.ceil(rows / max(1, batch_size)) * epochs


def event(job_id: uuid.UUID | None, message: str, **kw: Any) -> None:
    """Append to a job's log, when the cycle runs one (a database blip loses only the line)."""
    if job_id is None:
        return
    with unit_of_work() as session:
        job = FineTuningRepository(session).get_any(job_id)
        if job is not None:
            record_event(session, job, message, **kw)


# ---- reinforcement ---------------------------------------------------------------------------
def _task(payload: dict[str, Any], index: int) -> Any:
    """An environment task from a reinforcement line: its last user message and its answer."""
    prompt = next(
        str(m.get("content") or "") for m in reversed(payload["messages"]) if m["role"] == "user"
    )
    return trainer_client.file_task(index, prompt, str(payload["item"].get("answer")))


def _play(
    engine_url: str,
    model: str,
    grader: dict[str, Any],
    prompts: list[dict[str, Any]],
    n: int,
    temperature: float,
) -> list[tuple[list[int], list[float], list[float], float]]:
    """``n`` rollouts of each prompt (prompt-major) as (token ids, loss mask, sampling
    logprobs, reward): whole episodes with the environment's tools for an ``environment``
    grader, one assistant turn graded as text otherwise."""
    codec = trainer_client.chat_tokens(get_settings().base_model_path)
    sampler = trainer_client.token_sampler(engine_url)
    if grader["type"] == "environment":
        env = trainer_client.get_environment(grader["name"])
        tasks = [_task(p, i) for i, p in enumerate(prompts)]

        async def episodes() -> list[Any]:
            try:
                return await trainer_client.play_tokens(  # type: ignore[no-any-return]
                    sampler, codec, model, env, tasks, group_size=n, temperature=temperature
                )
            finally:
                await sampler.close()

        return [
            (
                list(e.trajectory.token_ids),
                list(e.trajectory.loss_mask),
                list(e.trajectory.logprobs),
                float(e.reward),
            )
            for e in asyncio.run(episodes())
        ]
    ids = [codec.conversation(p["messages"], p.get("tools")) for p in prompts]

    async def samples() -> list[list[Any]]:
        try:
            return await sampler.sample(  # type: ignore[no-any-return]
                model, ids, n=n, temperature=temperature, max_tokens=SAMPLE_MAX_TOKENS, seed=None
            )
        finally:
            await sampler.close()

    out = []
    for payload, prompt, group in zip(prompts, ids, asyncio.run(samples()), strict=True):
        for sample in group:
            reward = graders.grade(grader, payload["item"], codec.text(sample.token_ids))
            out.append(
                (
                    [*prompt, *sample.token_ids],
                    [0.0] * len(prompt) + [1.0] * len(sample.token_ids),
                    [0.0] * len(prompt) + list(sample.logprobs),
                    reward,
                )
            )
    return out


def rollouts(engine_url: str, model: str, rl: Rollouts) -> tuple[list[Payload], float]:
    """Policy-gradient rows from ``rl.n`` samples of every prompt on ``model`` (the parent),
    weighted by the group-relative advantage r - mean(r) of their prompt's group (Dr. GRPO,
    Liu et al. 2025: no division by the group's spread, so it stays within [-1, 1]); groups
    whose samples all scored the same carry no signal and are left out. Returns the rows and
    the mean reward of every sample."""
    n = rl.n
    played = _play(engine_url, model, rl.grader, rl.prompts, n, 1.0)
    rows: list[dict[str, Any]] = []
    for g in range(0, len(played), n):
        group = played[g : g + n]
        rewards = [r for *_, r in group]
        mean = sum(rewards) / len(rewards)
        if max(rewards) - min(rewards) < 1e-9:
            continue
        rows += [
            {"token_ids": ids, "loss_mask": mask, "sampling_logprobs": logprobs, "reward": r - mean}
            for ids, mask, logprobs, r in group
        ]
    mean_reward = sum(r for *_, r in played) / len(played) if played else 0.0
    return rows, mean_reward


def grader_score(
    engine_url: str, model: str, grader: dict[str, Any], prompts: list[dict[str, Any]]
) -> float | None:
    """The grader's mean score of ``model``'s greedy answers to ``prompts``."""
    if not prompts:
        return None
    played = _play(engine_url, model, grader, prompts, 1, 0.0)
    return sum(r for *_, r in played) / len(played)


# ---- what the gate measures, what the log says ------------------------------------------------
def job_signals(engine_url: str, parent: str, candidate: str, plan: CyclePlan) -> Signals:
    """A job's own signals: ``validation`` (its validation file), and for a reinforcement job
    ``corrections`` as the grader's score on training prompts (what should improve)."""
    from app.cycles import evaluation

    if plan.job is None:
        return Signals()
    rl = plan.job.rollouts

    def measure(rows: list[Payload]) -> ScoreSignal:
        if rl:
            before = grader_score(engine_url, parent, rl.grader, rows)
            after = grader_score(engine_url, candidate, rl.grader, rows)
        else:
            before = evaluation.score(engine_url, parent, rows)
            after = evaluation.score(engine_url, candidate, rows)
        return ScoreSignal(n=len(rows), before=before, after=after)

    validation = measure(plan.evaluation.validation)
    return Signals(validation=validation, corrections=measure(rl.measured) if rl else None)


def step_event(job_id: uuid.UUID, record: Any, steps: int, method: str) -> None:
    """The metrics line of one training step."""
    loss = record.losses.get(LOSS_OF[method])
    shown = f"{loss:.4f}" if isinstance(loss, float) else "n/a"
    event(
        job_id,
        f"Step {record.step}/{steps}: training loss={shown}",
        type="metrics",
        data={
            "step": record.step,
            "total_steps": steps,
            "train_loss": loss,
            "losses": record.losses,
            "tokens": record.tokens,
        },
    )


def version_note(job: Job) -> dict[str, Any]:
    """What a version trained by a job records about it (shown with the version's metrics)."""
    return {"job": job_public_id(job.id), "method": job.method, "suffix": job.suffix}


def finished(
    job_id: uuid.UUID | None,
    verdict: Any,
    signals: Signals,
    label: str,
    *,
    promoted: bool,
) -> None:
    """The last lines of a job's log: the gate's verdict and what became of the version."""
    from app.models.enums import RunStatus

    if job_id is None:
        return
    event(
        job_id,
        f"Evaluation: {verdict.reason}",
        type="metrics",
        data={"signals": signals.record()},
    )
    if verdict.status == RunStatus.succeeded:
        where = (
            "it is now the agent's live version"
            if promoted
            else "it stays a candidate (the agent's fine_tuning_promotes setting is off); "
            "serve it by name or promote it"
        )
        event(job_id, f"New fine-tuned model created: {label}; {where}")
        event(job_id, "The job has successfully completed")
    elif verdict.status == RunStatus.needs_evaluation:
        event(job_id, f"The candidate {label} was not promoted: {verdict.reason}", level="warn")
    else:
        event(
            job_id,
            f"The candidate {label} failed the evaluation gate: {verdict.reason}",
            level="error",
        )
