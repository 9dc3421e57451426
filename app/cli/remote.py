"""`clora --url URL --token TOKEN ...`: the admin commands through the HTTP API, for a
deployed stack administered from anywhere. Each command below is the remote twin of the
command of the same name; the local one talks to the database directly.

The token is a personal access token (`clora user token EMAIL` on the server, or the API's
`POST /api/auth/tokens`); it acts as its user. A platform admin names the tenant with
``--tenant``; a tenant's user acts in their own tenant, and naming another one is an error."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

#: Commands that run the stack itself, on its own machine: no remote form.
LOCAL_ONLY = ("up", "ps", "trainer", "migrate", "bench")


@dataclass
class Remote:
    url: str
    token: str
    _me: dict[str, Any] | None = field(default=None, repr=False)

    def call(
        self,
        method: str,
        path: str,
        *,
        tenant: str | None = None,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> Any:
        """One request; the answer's JSON (or text), or a readable error naming the status."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if tenant is not None and self.me()["role"] == "platform_admin":
            query["tenant"] = tenant
        try:
            resp = httpx.request(
                method,
                f"{self.url.rstrip('/')}{path}",
                headers={"Authorization": f"Bearer {self.token}"},
                params=query,
                json=body,
                content=content,
                timeout=120,
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            raise click.ClickException(f"{_message(resp)} (HTTP {resp.status_code})")
        if "json" in resp.headers.get("content-type", "") and "jsonl" not in resp.headers.get(
            "content-type", ""
        ):
            return resp.json()
        return resp.text

    def me(self) -> dict[str, Any]:
        """Who the token acts as (asked once)."""
        if self._me is None:
            self._me = self.call("GET", "/api/auth/me")
        return self._me

    def tenant(self, slug: str) -> str:
        """The tenant a command acts in: ``slug`` for a platform admin; otherwise the user's
        own, and a different ``--tenant`` given on the command line is refused."""
        me = self.me()
        if me["role"] == "platform_admin":
            return slug
        ctx = click.get_current_context()
        source = ctx.get_parameter_source("tenant") or ctx.get_parameter_source("slug")
        given = source == click.core.ParameterSource.COMMANDLINE
        if given and slug != me["tenant"]:
            raise click.ClickException(
                f"{me['email']} is a user of tenant {me['tenant']!r}, not {slug!r}"
            )
        return str(me["tenant"])


def forced_note(forced: dict[str, Any] | None) -> str:
    """A version list's note on a version forced live over the gate: who, how, when."""
    if not forced:
        return ""
    via = " (roll back)" if forced.get("action") == "roll back" else ""
    return f"  forced by {forced['by']}{via} at {forced['at'][:16]}"


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(body)[:300]


def remote() -> Remote | None:
    """The remote this invocation targets (``--url``/``--token``), or None (local)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx else None
    return obj if isinstance(obj, Remote) else None


# ---- clora tenant ---------------------------------------------------------------------------
def tenant_create(api: Remote, slug: str, name: str | None) -> str:
    made = api.call("POST", "/api/tenants", body={"slug": slug, "name": name})
    return f"tenant {made['slug']} created ({made['id']})"


def tenant_key(api: Remote, slug: str, name: str) -> str:
    made = api.call("POST", "/api/keys", tenant=api.tenant(slug), body={"name": name})
    return str(made["key"])


def tenant_agent(api: Remote, slug: str, agent: str, rank: int) -> str:
    slug = api.tenant(slug)
    body = {"name": agent, "lora_rank": rank, "lora_alpha": 2 * rank}
    api.call("POST", "/api/agents", tenant=slug, body=body)
    return f"agent {agent} created for {slug}"


# ---- clora user -----------------------------------------------------------------------------
def _user_id(api: Remote, slug: str, email: str) -> str:
    for row in api.call("GET", "/api/users", tenant=slug):
        if row["email"] == email:
            return str(row["id"])
    raise click.ClickException(f"no user {email!r} in tenant {slug!r}")


def user_create(api: Remote, email: str, slug: str | None, role: str, password: str) -> str:
    if slug is None:
        raise click.ClickException("a platform admin is created on the server: `clora user create`")
    slug = api.tenant(slug)
    body = {"email": email, "password": password, "role": role}
    made = api.call("POST", "/api/users", tenant=slug, body=body)
    return f"user {made['email']} created as {made['role']} in {slug}"


def user_list(api: Remote, slug: str) -> str:
    rows = api.call("GET", "/api/users", tenant=api.tenant(slug))
    lines = [
        f"{u['email']}\t{u['role']}\t{'disabled' if u['disabled'] else 'active'}" for u in rows
    ]
    return "\n".join(lines) or "no users"


def user_change(api: Remote, slug: str, email: str, what: str, **change: Any) -> str:
    slug = api.tenant(slug)
    api.call("PATCH", f"/api/users/{_user_id(api, slug, email)}", tenant=slug, body=change)
    return f"user {email} {what}"


def platform_admin_change(api: Remote, email: str, what: str, disabled: bool) -> str:
    found = [r for r in api.call("GET", "/api/platform-admins") if r["email"] == email]
    if not found:
        raise click.ClickException(f"no platform admin {email!r} (a tenant's user: --tenant)")
    api.call("PATCH", f"/api/platform-admins/{found[0]['id']}", body={"disabled": disabled})
    return f"platform admin {email} {what}"


def user_reset_password(api: Remote, slug: str, email: str, password: str) -> str:
    slug = api.tenant(slug)
    target = _user_id(api, slug, email)
    api.call("POST", f"/api/users/{target}/password", tenant=slug, body={"password": password})
    return f"password of {email} reset; their sessions ended"


# ---- clora cycle ----------------------------------------------------------------------------
def cycle_run(api: Remote, agent: str, slug: str, wait: bool) -> None:
    slug = api.tenant(slug)
    run = api.call("POST", f"/api/agents/{agent}/cycles", tenant=slug)
    click.echo(f"cycle {run['id']} {run['status']}")
    if not wait:
        return
    from app.adapters.signals import Signals
    from app.cli.learning import signal_lines

    with click.progressbar(length=100, label="cycle", file=sys.stderr) as bar:
        shown = 0
        while run["status"] in ("queued", "running"):
            time.sleep(1)
            run = api.call("GET", f"/api/cycles/{run['id']}", tenant=slug)
            bar.update(int(run["progress"] * 100) - shown)
            shown = int(run["progress"] * 100)
    metrics = run.get("metrics") or {}
    click.echo(
        f"status {run['status']}: {metrics.get('decision', '')} {run['error'] or ''}".rstrip()
    )
    for line in signal_lines(
        Signals.model_validate(run["signals"]) if run.get("signals") else None
    ):
        click.echo(f"  {line}")
    if run["status"] == "failed":
        raise click.ClickException(run["error"] or "cycle failed")


def cycle_list(api: Remote, slug: str, agent: str | None) -> str:
    rows = api.call("GET", "/api/cycles", tenant=api.tenant(slug), params={"agent": agent})
    return "\n".join(
        f"{r['id']}  {r['status']:<16} {r['trigger']:<8} "
        f"{r['created_at'][:16].replace('T', ' ')}  {(r['metrics'] or {}).get('decision', '')}"
        for r in rows[:50]
    )


# ---- clora adapter --------------------------------------------------------------------------
def adapter_list(api: Remote, agent: str, slug: str) -> str:
    lines = []
    for v in api.call("GET", f"/api/agents/{agent}/versions", tenant=api.tenant(slug)):
        gate = (v["metrics"] or {}).get("gate") or {}
        forced = (v["metrics"] or {}).get("forced")
        failed = f" ({gate['failed_signal']})" if gate.get("failed_signal") else ""
        note = forced_note(forced)
        lines.append(
            f"v{v['number']:<4} {v['status']:<10} {v['source']:<10} "
            f"gate {gate.get('verdict', '-')}{failed}{note}"
        )
    return "\n".join(lines)


def adapter_promote(api: Remote, agent: str, version: int, slug: str, force: bool) -> str:
    slug = api.tenant(slug)
    body = {"version": version, "force": force}
    api.call("POST", f"/api/agents/{agent}/promote", tenant=slug, body=body)
    return f"{slug}/{agent}@v{version} is live" + (" (forced over the gate)" if force else "")


def adapter_rollback(
    api: Remote, agent: str, to_version: int | None, slug: str, force: bool
) -> str:
    slug = api.tenant(slug)
    body = {"version": to_version, "force": force}
    api.call("POST", f"/api/agents/{agent}/rollback", tenant=slug, body=body)
    live = [v for v in api.call("GET", f"/api/agents/{agent}/versions", tenant=slug)]
    number = next((v["number"] for v in live if v["status"] == "live"), to_version)
    return f"{slug}/{agent}@v{number} is live" + (" (forced over the gate)" if force else "")


# ---- clora dataset --------------------------------------------------------------------------
def dataset_export(
    api: Remote, agent: str, slug: str, split: str | None, output: Path | None
) -> str:
    text = api.call(
        "GET", f"/api/agents/{agent}/dataset", tenant=api.tenant(slug), params={"split": split}
    )
    if output:
        output.write_text(text)
        return f"{len(text.splitlines())} examples written to {output}"
    return str(text)


def dataset_import(api: Remote, agent: str, file: Path, slug: str, split: str) -> str:
    done = api.call(
        "POST",
        f"/api/agents/{agent}/dataset",
        tenant=api.tenant(slug),
        params={"split": split},
        content=file.read_bytes(),
    )
    return f"{done['imported']} examples imported into {agent} ({split})"


# ---- clora experiment -----------------------------------------------------------------------
def experiment_run(api: Remote, agents: tuple[str, ...], slug: str, config: dict[str, Any]) -> None:
    slug = api.tenant(slug)
    made = [
        api.call("POST", "/api/experiments", tenant=slug, body={**config, "agent": agent})
        for agent in agents
    ]
    for exp in made:
        click.echo(f"experiment {exp['id']} on {exp['agent']}")
    shown = {exp["id"]: 0 for exp in made}
    pending = {exp["id"]: exp for exp in made}
    while pending:
        time.sleep(2)
        for exp_id in list(pending):
            exp = api.call("GET", f"/api/experiments/{exp_id}", tenant=slug)
            for step in exp["steps"][shown[exp_id] :]:
                m = step["metrics"]
                click.echo(
                    f"{exp['agent']:<16} step {step['step'] + 1:>3}/{config['steps']}  "
                    f"accuracy {m.get('accuracy', 0):.3f}"
                )
            shown[exp_id] = len(exp["steps"])
            if exp["status"] not in ("queued", "running"):
                click.echo(f"{exp['agent']}: {exp['status']}")
                del pending[exp_id]


def experiment_list(api: Remote, slug: str) -> str:
    rows = api.call("GET", "/api/experiments", tenant=api.tenant(slug))
    lines = []
    for r in rows[:50]:
        last = r["steps"][-1]["metrics"].get("accuracy") if r["steps"] else None
        lines.append(
            f"{r['id']}  {r['agent']:<16} {r['status']:<10} steps {len(r['steps'])}  accuracy {last}"
        )
    return "\n".join(lines)


def experiment_cancel(api: Remote, experiment_id: str, slug: str) -> str:
    api.call("POST", f"/api/experiments/{experiment_id}/cancel", tenant=api.tenant(slug))
    return "cancelled"


# ---- clora interactions ---------------------------------------------------------------------
def dead_letter_line(at: str, interaction_id: str | None, entry_id: str, error: str) -> str:
    """One refused record: when, which interaction (or stream entry), and why."""
    return f"{at}  {interaction_id or 'entry ' + entry_id}  {error}"


def interactions_dead_letters(api: Remote, slug: str, limit: int) -> str:
    rows = api.call(
        "GET",
        "/api/interactions/dead-letters",
        tenant=api.tenant(slug),
        params={"limit": limit},
    )
    lines = [
        dead_letter_line(r["at"], r["interaction_id"], r["entry_id"], r["error"]) for r in rows
    ]
    return "\n".join(lines) or "no interaction record was refused"
