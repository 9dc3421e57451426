"""`clora experiment`: RL experiments from the command line, with live progress."""

from __future__ import annotations

import asyncio
import uuid

import click

from app.cli import remote as rm
from app.cli.common import TENANT, readable, scope
from app.cli.remote import remote


@click.group()
def experiment() -> None:
    """RL experiments (one agent, one environment, synchronous RL)."""


@experiment.command("run")
@click.option(
    "--agent", "agents", multiple=True, required=True, help="Repeat to run several concurrently."
)
@click.option("--env", "environment", default="calculator", show_default=True)
@click.option("--steps", default=10, show_default=True)
@click.option("--prompts", "prompts_per_step", default=16, show_default=True)
@click.option("--group", "group_size", default=8, show_default=True)
@click.option("--lr", "learning_rate", default=1e-3, show_default=True)
@click.option("--seed", default=0, show_default=True)
@TENANT
@readable
def run(
    agents: tuple[str, ...],
    environment: str,
    steps: int,
    prompts_per_step: int,
    group_size: int,
    learning_rate: float,
    seed: int,
    tenant: str,
) -> None:
    """Run RL for each AGENT on ENV, all at once on the shared engine and trainer."""
    from app.experiments.schemas import ExperimentConfig

    try:
        config = ExperimentConfig(
            environment=environment,
            steps=steps,
            prompts_per_step=prompts_per_step,
            group_size=group_size,
            learning_rate=learning_rate,
            seed=seed,
        )
    except ValueError as exc:  # pydantic's ValidationError: one readable line per field
        raise click.UsageError(str(exc)) from exc
    if (api := remote()) is not None:
        rm.experiment_run(api, agents, tenant, config.model_dump(mode="json"))
        return
    from app.core.config import get_settings
    from app.core.db import unit_of_work
    from app.experiments.runner import StepReport, run_experiments
    from app.experiments.service import create_experiment

    ids: list[tuple[uuid.UUID, uuid.UUID]] = []
    names: dict[uuid.UUID, str] = {}
    with unit_of_work() as session:
        owner, _ = scope(session, tenant)
        for agent in agents:
            exp = create_experiment(session, owner.id, agent, config)
            ids.append((owner.id, exp.id))
            names[exp.id] = agent
    for _, exp_id in ids:
        click.echo(f"experiment {exp_id} on {names[exp_id]}")

    def progress(exp_id: uuid.UUID, report: StepReport) -> None:
        m = report.metrics
        click.echo(
            f"{names[exp_id]:<16} step {report.step + 1:>3}/{steps}  accuracy {m['accuracy']:.3f}  "
            f"rollout {m['rollout_s']:.1f}s  train {m['train_s']:.1f}s  sync {m['sync_s']:.2f}s"
        )

    statuses = asyncio.run(run_experiments(get_settings(), ids, on_step=progress))
    for (_, exp_id), status in zip(ids, statuses, strict=True):
        click.echo(f"{names[exp_id]}: {status}")


@experiment.command("list")
@TENANT
@readable
def list_(tenant: str) -> None:
    """List experiments with their last step's accuracy."""
    if (api := remote()) is not None:
        click.echo(rm.experiment_list(api, tenant))
        return
    from app.core.db import unit_of_work
    from app.experiments.repository import ExperimentRepository
    from app.experiments.service import to_out

    with unit_of_work() as session:
        owner, _ = scope(session, tenant)
        for exp in ExperimentRepository(session).list(owner.id)[:50]:
            out = to_out(session, exp)
            last = out.steps[-1].metrics.get("accuracy") if out.steps else None
            click.echo(
                f"{out.id}  {out.agent:<16} {out.status:<10} steps {len(out.steps)}  accuracy {last}"
            )


@experiment.command("cancel")
@click.argument("experiment_id", type=click.UUID)
@TENANT
@readable
def cancel(experiment_id: uuid.UUID, tenant: str) -> None:
    """Stop an experiment at its next step boundary."""
    if (api := remote()) is not None:
        click.echo(rm.experiment_cancel(api, str(experiment_id), tenant))
        return
    from app.core.db import unit_of_work
    from app.experiments.service import cancel_experiment

    with unit_of_work() as session:
        owner, _ = scope(session, tenant)
        cancel_experiment(session, owner.id, experiment_id)
    click.echo("cancelled")
