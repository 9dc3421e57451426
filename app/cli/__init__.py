"""The `clora` command: one module per command group, assembled here."""

from __future__ import annotations

import click

from app.cli.bench import bench
from app.cli.experiments import experiment
from app.cli.learning import adapter, cycle, dataset
from app.cli.stack import migrate, ps, trainer, up
from app.cli.tenants import tenant
from app.cli.users import user
from app.core.logging import configure as configure_logging


@click.group()
def main() -> None:
    """clora: continual multi-tenant LoRA learning."""
    configure_logging(json_logs=False, level="WARNING")


for command in (up, ps, trainer, migrate, tenant, user, cycle, adapter, dataset, experiment, bench):
    main.add_command(command)
