"""`clora cycle|adapter|dataset`: the learning loop from the command line."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import click

from app.adapters.signals import CopiesSignal, PreservationSignal, Signals
from app.cli import remote as rm
from app.cli.common import TENANT, readable, scope
from app.cli.remote import remote


@click.group()
def cycle() -> None:
    """Learning cycles."""


@cycle.command("run")
@click.argument("agent")
@TENANT
@click.option("--wait/--no-wait", default=True, help="Follow progress until the cycle ends.")
@readable
def cycle_run(agent: str, tenant: str, wait: bool) -> None:
    """Start AGENT's learning cycle now and show its progress."""
    if (api := remote()) is not None:
        rm.cycle_run(api, agent, tenant, wait)
        return
    from app.core.db import unit_of_work
    from app.cycles import service

    with unit_of_work() as session:
        owner, found = scope(session, tenant, agent)
        run, created = service.start_cycle(session, owner.id, found.id, trigger="manual")
        run_id, tenant_id = run.id, owner.id
    click.echo(f"cycle {run_id} {'queued' if created else 'already active'}")
    if wait:
        _follow(tenant_id, run_id)


def _follow(tenant_id: uuid.UUID, run_id: uuid.UUID, timeout_s: float = 3600) -> None:
    from app.core.db import unit_of_work
    from app.cycles.service import get_run

    deadline = time.monotonic() + timeout_s
    with click.progressbar(length=100, label="cycle", file=sys.stderr) as bar:
        shown = 0
        while time.monotonic() < deadline:
            with unit_of_work() as session:
                run = get_run(session, tenant_id, run_id)
                status, progress, metrics, error = run.status, run.progress, run.metrics, run.error
            bar.update(int(progress * 100) - shown)
            shown = int(progress * 100)
            if status not in ("queued", "running"):
                break
            time.sleep(1)
    click.echo(f"status {status}: {metrics.get('decision', '')} {error or ''}".rstrip())
    for line in signal_lines(Signals.read(metrics)):
        click.echo(f"  {line}")
    if status == "failed":
        raise click.ClickException(error or "cycle failed")


def signal_lines(signals: Signals | None) -> list[str]:
    """One readable line per gate signal as the API records it (`app.adapters.signals`):
    parent before, candidate after, examples; under preservation, the held-back answers that
    changed (up to five), under copies what was copied. Every bound is the recorded one."""
    out: list[str] = []
    for name, sig in signals or ():
        if sig is None:
            continue
        if isinstance(sig, PreservationSignal):
            value = "-" if sig.agreement is None else f"{sig.agreement:.1%}"
            limit = f"min {sig.min or 0:.0%}"
            if sig.min_examples is not None and sig.n < sig.min_examples:
                limit += f"; too few to count, under {sig.min_examples}"
            elif (
                sig.upper_bound is not None
                and sig.agreement is not None
                and sig.agreement < (sig.min or 0)
            ):
                limit += (
                    f"; with 90% confidence up to {sig.upper_bound:.1%}, which the gate compares"
                )
                if sig.floor is not None:
                    limit += f"; refused below {sig.floor:.0%} whatever the bound"
            graded = ""
            if sig.graded:
                graded = f", {sig.graded} graded by the environment"
                if sig.no_worse:
                    graded += f" ({sig.no_worse} changed but no worse, counted as kept)"
            out.append(f"{name:<12} agreement {value} ({limit}), n={sig.n}{graded}")
            out += [
                f"  changed: {c.prompt!r}: {c.parent} -> {c.candidate}"
                + (f" ({c.kind})" if c.kind else "")
                for c in sig.changed
            ]
        elif isinstance(sig, CopiesSignal):
            out.append(
                f"{name:<12} {sig.before} -> {sig.after} of {sig.n} other prompts answered "
                f"with a correction's answer verbatim ({sig.near} near a correction; at most "
                f"{sig.allowed or 0} allowed)"
            )
            out += [f"  copied: {c.prompt!r}: {c.parent} -> {c.candidate}" for c in sig.copied]
        else:
            shown = (
                "-"
                if sig.before is None or sig.after is None
                else f"{sig.before:.3f} -> {sig.after:.3f}"
            )
            out.append(f"{name:<12} {shown}, n={sig.n}")
    return out


@cycle.command("list")
@TENANT
@click.option("--agent", default=None)
@readable
def cycle_list(tenant: str, agent: str | None) -> None:
    """List cycle runs, newest first."""
    if (api := remote()) is not None:
        click.echo(rm.cycle_list(api, tenant, agent))
        return
    from app.core.db import unit_of_work
    from app.cycles.repository import CycleRepository

    with unit_of_work() as session:
        owner, found = scope(session, tenant, agent)
        for run in CycleRepository(session).runs(owner.id, found.id if found else None)[:50]:
            click.echo(
                f"{run.id}  {run.status:<16} {run.trigger:<8} {run.created_at:%Y-%m-%d %H:%M}  "
                f"{run.metrics.get('decision', '')}"
            )


@click.group()
def adapter() -> None:
    """Adapter versions: promote and roll back."""


@adapter.command("list")
@click.argument("agent")
@TENANT
@readable
def adapter_list(agent: str, tenant: str) -> None:
    """AGENT's versions: status, the gate's verdict and failing signal, forced promotions."""
    if (api := remote()) is not None:
        click.echo(rm.adapter_list(api, agent, tenant))
        return
    from app.adapters.repository import AdapterVersionRepository
    from app.core.db import unit_of_work

    with unit_of_work() as session:
        owner, found = scope(session, tenant, agent)
        for v in AdapterVersionRepository(session).list(owner.id, found.id):
            gate = (v.metrics or {}).get("gate") or {}
            forced = (v.metrics or {}).get("forced")
            verdict = gate.get("verdict", "-")
            failed = f" ({gate['failed_signal']})" if gate.get("failed_signal") else ""
            note = rm.forced_note(forced)
            click.echo(f"v{v.number:<4} {v.status:<10} {v.source:<10} gate {verdict}{failed}{note}")


@adapter.command("promote")
@click.argument("agent")
@click.argument("version", type=int)
@TENANT
@click.option("--force", is_flag=True, help="Promote a version the gate did not pass (recorded).")
@readable
def adapter_promote(agent: str, version: int, tenant: str, force: bool) -> None:
    """Make AGENT@vVERSION live now."""
    if (api := remote()) is not None:
        click.echo(rm.adapter_promote(api, agent, version, tenant, force))
        return
    from app.adapters import service as registry
    from app.adapters.repository import AdapterVersionRepository
    from app.core.db import unit_of_work

    with unit_of_work() as session:
        owner, found = scope(session, tenant, agent)
        row = AdapterVersionRepository(session).get_by_number(owner.id, found.id, version)
        if row is None:
            raise click.ClickException(f"{agent} has no version {version}")
        row = registry.promote(session, owner.id, row.id, force=force, by="cli")
        forced = (row.metrics or {}).get("forced")
    note = f" (forced over the gate's verdict: {forced['verdict']})" if forced and force else ""
    click.echo(f"{tenant}/{agent}@v{version} is live{note}")


@adapter.command("rollback")
@click.argument("agent")
@click.option(
    "--to", "to_version", type=int, default=None, help="Version (default: the previous live one)."
)
@TENANT
@click.option(
    "--force", is_flag=True, help="Roll back to a version the gate did not pass (recorded)."
)
@readable
def adapter_rollback(agent: str, to_version: int | None, tenant: str, force: bool) -> None:
    """Serve an earlier version of AGENT again (one the gate did not pass only with --force)."""
    if (api := remote()) is not None:
        click.echo(rm.adapter_rollback(api, agent, to_version, tenant, force))
        return
    from app.adapters import service as registry
    from app.core.db import unit_of_work

    with unit_of_work() as session:
        owner, found = scope(session, tenant, agent)
        row = registry.rollback(session, owner.id, found.id, to_version, force=force, by="cli")
        number, forced = row.number, (row.metrics or {}).get("forced")
    note = f" (forced over the gate's verdict: {forced['verdict']})" if forced and force else ""
    click.echo(f"{tenant}/{agent}@v{number} is live{note}")


@click.group()
def dataset() -> None:
    """Export and import an agent's examples as JSONL."""


@dataset.command("export")
@click.argument("agent")
@TENANT
@click.option("--split", type=click.Choice(["train", "eval"]), default=None)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@readable
def dataset_export(agent: str, tenant: str, split: str | None, output: Path | None) -> None:
    """Write AGENT's examples (OpenAI chat and preference formats)."""
    if (api := remote()) is not None:
        click.echo(rm.dataset_export(api, agent, tenant, split, output), nl=output is not None)
        return
    from app.core.db import unit_of_work
    from app.datasets.service import export_examples
    from app.models.enums import ExampleSplit

    with unit_of_work() as session:
        owner, found = scope(session, tenant, agent)
        lines = list(
            export_examples(session, owner.id, found.id, ExampleSplit(split) if split else None)
        )
    if output:
        output.write_text("".join(lines))
        click.echo(f"{len(lines)} examples written to {output}")
    else:
        click.echo("".join(lines), nl=False)


@dataset.command("import")
@click.argument("agent")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@TENANT
@click.option("--split", type=click.Choice(["train", "eval"]), default="train", show_default=True)
@readable
def dataset_import(agent: str, file: Path, tenant: str, split: str) -> None:
    """Import a JSONL file into AGENT's examples (eval: golden examples)."""
    if (api := remote()) is not None:
        click.echo(rm.dataset_import(api, agent, file, tenant, split))
        return
    from app.core.db import unit_of_work
    from app.datasets.service import import_examples
    from app.models.enums import ExampleSplit

    with unit_of_work() as session:
        owner, found = scope(session, tenant, agent)
        count = import_examples(
            session, owner.id, found.id, file.read_text().splitlines(), ExampleSplit(split)
        )
    click.echo(f"{count} examples imported into {agent} ({split})")
