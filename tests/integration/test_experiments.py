"""RL experiments on the real engine and the trainer service: end to end, concurrency,
cancellation. The experiment loops run in this process; every step trains in the service."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from safetensors.torch import load_file
from sqlalchemy import select

from app.adapters import service as registry
from app.core.config import get_settings
from app.core.db import unit_of_work
from app.experiments.repository import ExperimentRepository
from app.experiments.runner import run_experiments
from app.experiments.schemas import ExperimentConfig
from app.experiments.service import cancel_experiment, create_experiment
from app.models import AdapterVersion, Experiment
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant

pytestmark = pytest.mark.slow

SMALL = ExperimentConfig(steps=2, prompts_per_step=4, group_size=4, seed=3, rollout_mode="seeded")


def create(fx: TenantFixture, config: ExperimentConfig = SMALL) -> tuple[uuid.UUID, uuid.UUID]:
    with unit_of_work() as session:
        exp = create_experiment(session, fx.tenant.id, fx.agent.name, config)
        return fx.tenant.id, exp.id


def steps_of(ids: tuple[uuid.UUID, uuid.UUID]) -> list[dict]:
    with unit_of_work() as session:
        return [s.metrics for s in ExperimentRepository(session).steps(*ids)]


def versions_of(fx: TenantFixture) -> list[AdapterVersion]:
    with unit_of_work() as session:
        rows = session.scalars(
            select(AdapterVersion)
            .where(AdapterVersion.agent_id == fx.agent.id)
            .order_by(AdapterVersion.number)
        ).all()
        for r in rows:
            session.expunge(r)
        return list(rows)


def test_short_experiment_runs_and_records_steps(gateway: Gateway, trainer_service: object) -> None:
    fx = make_tenant("rl")
    ids = create(fx, SMALL.model_copy(update={"eval_tasks": 8, "rollout_mode": "throughput"}))
    [status] = asyncio.run(run_experiments(get_settings(), [ids]))
    assert status == "succeeded"
    steps = steps_of(ids)
    assert len(steps) == 2
    for m in steps:
        assert m["episodes"] == 16 and 0.0 <= m["accuracy"] <= 1.0
        assert m["rollout_s"] > 0 and m["step_s"] >= m["rollout_s"] + m["train_s"]
        assert m["tokens"] >= 0
    versions = versions_of(fx)
    assert [v.number for v in versions] == [1, 2] and all(
        v.source == "experiment" for v in versions
    )
    assert versions[1].parent_id == versions[0].id and all(registry.verify(v) for v in versions)
    # The published version serves through the gateway as a pinned version.
    reply = fx.client(gateway).chat.completions.create(
        model=f"{fx.agent.name}@v2", messages=[{"role": "user", "content": "2+2"}], max_tokens=4
    )
    assert reply.system_fingerprint == f"{fx.tenant.slug}/{fx.agent.name}@v2"
    # eval_tasks: each step grades its published version greedily on that many held-out tasks.
    import openai

    from trainer.envs import CalculatorEnvironment
    from trainer.envs.runner import run_episodes

    env = CalculatorEnvironment()
    client = openai.AsyncOpenAI(base_url=gateway.api_base, api_key=fx.key)
    graded = asyncio.run(
        run_episodes(
            client,
            f"{fx.agent.name}@v2",
            env,
            env.tasks("test", 8),
            temperature=0.0,
            token_data=False,
        )
    )
    assert all(m["eval_tasks"] == 8 for m in steps)
    assert steps[1]["eval_accuracy"] == sum(e.correct for e in graded) / 8


def test_concurrent_experiments_match_running_alone(
    gateway: Gateway, trainer_service: object
) -> None:
    """Same seeds, alone vs together: same rewards per step and the same trained weights.

    Rollouts are seeded per sequence (`rollout_mode="seeded"`), so sampling is reproducible as long as the engine computes
    the same logits whatever else is in the batch (float32 on this CPU); training of two
    adapters in one multiplexed step equals training them apart (trainer tests) up to float32
    reassociation, which Adam can amplify for an element whose gradient is near zero: no
    element may differ by a tenth of one Adam step (the learning rate), while the rewards,
    step by step, must be identical."""
    alone = [make_tenant("solo-a"), make_tenant("solo-b")]
    together = [make_tenant("duo-a"), make_tenant("duo-b")]
    configs = [SMALL, SMALL.model_copy(update={"seed": 11})]
    for fx, cfg in zip(alone, configs, strict=True):
        assert asyncio.run(run_experiments(get_settings(), [create(fx, cfg)])) == ["succeeded"]
    ids = [create(fx, cfg) for fx, cfg in zip(together, configs, strict=True)]
    assert asyncio.run(run_experiments(get_settings(), ids)) == ["succeeded", "succeeded"]
    for solo, duo in zip(alone, together, strict=True):
        solo_steps = [m["reward_mean"] for m in steps_of(_ids_of(solo))]
        duo_steps = [m["reward_mean"] for m in steps_of(_ids_of(duo))]
        assert solo_steps == duo_steps
        a = load_file(str(Path(versions_of(solo)[-1].path) / "adapter_model.safetensors"))
        b = load_file(str(Path(versions_of(duo)[-1].path) / "adapter_model.safetensors"))
        assert a.keys() == b.keys()
        tolerance = 0.1 * SMALL.learning_rate
        for key in a:
            assert (a[key] - b[key]).abs().max().item() < tolerance, key


def test_pipelined_experiment_rolls_out_one_version_behind(
    gateway: Gateway, trainer_service: object
) -> None:
    """`pipeline`: step k+1's episodes come from the version before step k's update, and the
    steps say so (`policy_lag`, `rollout_model`); without it every step is on-policy."""
    names = {}
    for pipeline in (False, True):
        fx = make_tenant(f"pipe-{int(pipeline)}")
        ids = create(fx, SMALL.model_copy(update={"steps": 3, "pipeline": pipeline}))
        assert asyncio.run(run_experiments(get_settings(), [ids])) == ["succeeded"]
        steps = steps_of(ids)
        published = [
            registry.adapter_name(fx.tenant.slug, fx.agent.name, v.number) for v in versions_of(fx)
        ]
        assert len(published) == 3
        names[pipeline] = (
            [m["rollout_model"] for m in steps],
            published,
            [m["policy_lag"] for m in steps],
        )
    rolled, published, lag = names[False]
    assert rolled[1:] == published[:2] and lag == [0, 0, 0]
    rolled, published, lag = names[True]
    assert rolled[0] == rolled[1] and rolled[2] == published[0] and lag == [0, 1, 1]


def _ids_of(fx: TenantFixture) -> tuple[uuid.UUID, uuid.UUID]:
    with unit_of_work() as session:
        exp = session.scalars(select(Experiment).where(Experiment.agent_id == fx.agent.id)).one()
        return fx.tenant.id, exp.id


def test_cancelled_experiment_stops_without_half_published_version(
    gateway: Gateway, trainer_service: object
) -> None:
    fx = make_tenant("stopper")
    ids = create(fx, SMALL.model_copy(update={"steps": 20}))

    async def run_and_cancel() -> str:
        task = asyncio.create_task(run_experiments(get_settings(), [ids]))
        while not steps_of(ids):
            await asyncio.sleep(0.2)
        with unit_of_work() as session:
            cancel_experiment(session, *ids)
        [status] = await task
        return status

    assert asyncio.run(run_and_cancel()) == "cancelled"
    steps = steps_of(ids)
    assert 1 <= len(steps) < 20
    versions = versions_of(fx)
    assert len(versions) == len(steps) and all(registry.verify(v) for v in versions)
    leftovers = (
        list((get_settings().adapter_dir / ".tmp").glob("*"))
        if (get_settings().adapter_dir / ".tmp").exists()
        else []
    )
    assert leftovers == []
    with unit_of_work() as session:
        assert session.get(Experiment, ids[1]).status == "cancelled"  # type: ignore[union-attr]
