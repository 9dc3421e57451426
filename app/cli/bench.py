"""`clora bench`: the benchmarks under bench/."""

from __future__ import annotations

import sys

import click


@click.group()
def bench() -> None:
    """Benchmarks (print a table, write JSON and a plot under bench/results/)."""


@bench.command("experiments", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_experiments(args: tuple[str, ...]) -> None:
    """N concurrent RL experiments vs serial warm and serial cold (see bench/experiments.py)."""
    import subprocess

    from app.core.config import REPO_ROOT

    cmd = [sys.executable, "-m", "bench.experiments", *args]
    raise SystemExit(subprocess.call(cmd, cwd=REPO_ROOT))
