"""Continual learning on the real stack: does learning from corrections keep the agent?

Runs against a live clora (``BASE``, ``KEY`` and ``ADMIN_PASSWORD`` in the environment, as
`../shared/tools/try-as-user` sets them; without ``BASE`` it starts ``clora up`` on a fresh data
dir itself). Every scenario works in a tenant of its own, through the public API only (the
``openai`` client for the agent, the admin API for schedules and cycles), greedy, with the
calculator environment's system prompt and tools:

- ``readme``: the README flow. Some untouched traffic, one wrong answer corrected into the right
  calculator call, one cycle. Reports whether the corrected prompt is answered as corrected, the
  gate's environment accuracy on 200 held-out tasks (parent vs new version), preservation
  agreement, and the answers to prompts near the corrected one. Repeated ``--repeats`` times,
  with the default schedule, or with ``--schedule steps:lr:kl_coef:replay_share`` (kept under
  ``readme_schedules`` in the results, by that string; ``continual`` too, under
  ``continual_schedules``). ``--traffic N`` serves N untouched requests first instead of 48
  (kept under ``readme_traffic``, by N).
- ``continual``: ``--cycles`` cycles in a row, each after 5 corrections on new prompts (a wrong
  first step corrected into the calculator call, or a wrong final answer after the calculator's
  result corrected into ``final_answer``). After each cycle: the share of all corrections so far
  that the live version answers as corrected, and held-out environment accuracy.
- ``forgetting``: a candidate trained to forget (10x learning rate, no KL, no replay) must be
  refused, and the failing signal named.
- ``empty``: a fresh agent with no environment, no traffic and no held-out examples: its first
  cycle must end ``needs_evaluation`` and promote nothing.
- ``no_environment``: an agent without an environment (issue 30's trial). 20 "What is X
  times Y?" and 20 word problems served untouched, one "What is 12 times 5?" corrected into
  60 (a plain "60" in even repeats, ``final_answer({"answer": 60})`` in odd ones), one cycle.
  Then 12 "What is X times Y?" prompts nobody served are asked of the live agent, and of the
  parent before the correction: the live agent must not answer 60 to more of them than the
  parent did, whether the gate refused the candidate (naming the signal) or promoted it.
- ``grid`` (``--grid``): the README flow under several (steps, learning rate, kl_coef,
  replay_share) settings, the table the defaults were chosen from.

Writes ``bench/results/continual.json`` and ``bench/results/continual.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from trainer.envs import CalculatorEnvironment
from trainer.envs.base import Task

ENV = CalculatorEnvironment()
RESULTS = Path(__file__).parent / "results"
README_PROMPT = "Leo had 96 apples and gave away 4. How many apples are left?"
README_FIX = "96-4"
NEAR_PROMPTS = [
    "Leo had 97 apples and gave away 5. How many apples are left?",
    "Mia had 50 pens and gave away 8. How many pens are left?",
    "What is 13 times 5?",
]


# ---- the stack ---------------------------------------------------------------------------------
@contextmanager
def live_stack() -> Iterator[tuple[str, str]]:
    """(BASE, admin password) of a running stack: the one in the environment, or a fresh one."""
    if os.environ.get("BASE"):
        yield os.environ["BASE"].rstrip("/"), os.environ["ADMIN_PASSWORD"]
        return
    data = Path(tempfile.mkdtemp(prefix="clora-continual-")) / "data"
    port = os.environ.get("CLORA_PORT", "18100")
    log = data.with_suffix(".log")
    data.mkdir(parents=True)
    env = {**os.environ, "CLORA_DATA_DIR": str(data), "CLORA_PORT": port}
    with log.open("w") as out:
        clora = str(Path(sys.executable).parent / "clora")
        proc = subprocess.Popen(
            [clora, "up"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"clora up exited:\n{log.read_text()[-2000:]}")
            time.sleep(1)
        password = re.search(r"@clora\.local / (\S+)", log.read_text())
        assert password, "no admin password in the log"
        yield base, password.group(1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)


class Admin:
    """The admin API, signed in as the platform admin."""

    def __init__(self, base: str, password: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=120)
        r = self.http.post(
            "/api/auth/login", json={"email": "admin@clora.local", "password": password}
        )
        r.raise_for_status()
        self.http.headers["x-csrf-token"] = self.http.cookies.get("clora_csrf") or ""

    def call(self, method: str, path: str, tenant: str | None = None, **kw: Any) -> Any:
        headers = {"x-clora-tenant": tenant} if tenant else {}
        r = self.http.request(method, path, headers=headers, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def tenant(self, slug: str, environment: str | None = "calculator") -> str:
        """A new tenant with an agent `calculator` and an API key; returns the key."""
        self.call("POST", "/api/tenants", json={"slug": slug})
        self.call(
            "POST", "/api/agents", slug, json={"name": "calculator", "environment": environment}
        )
        return str(self.call("POST", "/api/keys", slug, json={"name": "bench"})["key"])

    def schedule(self, slug: str, **changes: Any) -> dict[str, Any]:
        current = self.call("GET", "/api/agents/calculator/schedule", slug)
        current.update(changes)
        return dict(self.call("PUT", "/api/agents/calculator/schedule", slug, json=current))

    def cycle(self, slug: str, timeout_s: float = 1800) -> dict[str, Any]:
        run = self.call("POST", "/api/agents/calculator/cycles", slug)
        deadline = time.monotonic() + timeout_s
        while run["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(2)
            run = self.call("GET", f"/api/cycles/{run['id']}", slug)
        return dict(run)

    def live_version(self, slug: str) -> int | None:
        agents = self.call("GET", "/api/agents", slug)
        return next(a["live_version"] for a in agents if a["name"] == "calculator")


# ---- the agent's side ----------------------------------------------------------------------------
def messages(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": ENV.system_prompt}, {"role": "user", "content": prompt}]


def ask(client: OpenAI, convo: list[dict[str, Any]]) -> Any:
    return client.chat.completions.create(
        model="calculator",
        messages=convo,
        tools=ENV.tools(),
        temperature=0,
        max_tokens=96,  # type: ignore[arg-type]
    )


def first_call(message: Any) -> tuple[str, Any] | None:
    calls = message.tool_calls or []
    if not calls:
        return None
    try:
        return calls[0].function.name, json.loads(calls[0].function.arguments)
    except json.JSONDecodeError:
        return calls[0].function.name, calls[0].function.arguments


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {
        "content": None,
        "tool_calls": [
            {
                "id": "call_fix",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }


def correct(base: str, key: str, completion_id: str, message: dict[str, Any]) -> None:
    r = httpx.post(
        f"{base}/v1/feedback",
        headers={"Authorization": f"Bearer {key}"},
        json={"interaction_id": completion_id, "kind": "correction", "correction": message},
        timeout=60,
    )
    r.raise_for_status()


def as_target(message: dict[str, Any]) -> tuple[str, Any]:
    fn = message["tool_calls"][0]["function"]
    return fn["name"], json.loads(fn["arguments"])


def right_first_step(task: Task, brief: str) -> bool:
    """Whether a first step, as the gate reports it (``name({json arguments})``, several
    joined by ``; ``, or text), is right (`Environment.grade_first_step`, which the gate
    itself grades by)."""
    return ENV.grade_first_step(task, message_of(brief)) is True


def message_of(brief: str) -> dict[str, Any]:
    """The assistant message a gate report's answer stands for."""
    calls = []
    for part in brief.split("; "):
        call = re.fullmatch(r"([A-Za-z_]\w*)\((.*)\)", part, re.DOTALL)
        if call is None:
            return {"role": "assistant", "content": brief}
        calls.append({"function": {"name": call[1], "arguments": call[2]}})
    return {"role": "assistant", "tool_calls": calls}


def kinds_of_change(changed: list[dict[str, Any]]) -> dict[str, int]:
    """The preservation check's changed answers (it lists up to five) by the kind the gate
    gave them: ``wrong->right``, ``wrong->wrong``, ``right->wrong``, ... or ``ungraded``."""
    return dict(Counter(c.get("kind") or "ungraded" for c in changed))


def traffic(client: OpenAI, n: int, seed: int) -> None:
    """Untouched traffic: environment-style questions nobody gives feedback on."""
    for task in ENV.tasks("train", n, seed=seed):
        ask(client, messages(task.prompt))


# ---- scenarios -----------------------------------------------------------------------------------
def readme_flow(
    admin: Admin, base: str, tag: str, seed: int, untouched: int = 48, **schedule: Any
) -> dict[str, Any]:
    slug = f"rd-{tag}"
    key = admin.tenant(slug)
    client = OpenAI(base_url=f"{base}/v1", api_key=key)
    if schedule:
        admin.schedule(slug, **schedule)
    traffic(client, untouched, seed=1000 + seed)
    wrong = ask(client, messages(README_PROMPT))
    before = first_call(wrong.choices[0].message)
    target = call("calculator", expression=README_FIX)
    correct(base, key, wrong.id, target)
    time.sleep(2)
    started = time.monotonic()
    run = admin.cycle(slug)
    seconds = time.monotonic() - started
    after = ask(client, messages(README_PROMPT))
    near = {p: first_call(ask(client, messages(p)).choices[0].message) for p in NEAR_PROMPTS}
    signals = run["metrics"].get("signals", {})
    env = signals.get("environment", {})
    return {
        "schedule": schedule or "defaults",
        "untouched_requests": untouched,
        "status": run["status"],
        "decision": run["metrics"].get("decision"),
        "before": before,
        "corrected_answered_as_corrected": first_call(after.choices[0].message)
        == as_target(target),
        "served_by": after.system_fingerprint,
        "env_before": env.get("before"),
        "env_after": env.get("after"),
        "env_tasks": env.get("n"),
        "preservation": signals.get("preservation", {}).get("agreement"),
        "preservation_n": signals.get("preservation", {}).get("n"),
        "preservation_changed": signals.get("preservation", {}).get("changed"),
        # How many held-back prompts the environment graded, and how many changed answers it
        # counted as kept (no worse): the exact-match agreement of the same run is
        # preservation - no_worse / n, so both rules are read off one run.
        "preservation_graded": signals.get("preservation", {}).get("graded"),
        "preservation_no_worse": signals.get("preservation", {}).get("no_worse"),
        "preservation_change_kinds": kinds_of_change(
            signals.get("preservation", {}).get("changed") or []
        ),
        "corrections_signal": signals.get("corrections"),
        "near": {p: v for p, v in near.items()},
        "near_answer_60": sum(
            1
            for v in near.values()
            if v and v[0] == "final_answer" and v[1].get("answer") in (60, "60")
        ),
        "cycle_s": round(seconds, 1),
        "trained_steps": run["metrics"].get("trained_steps"),
        "learned": run["metrics"].get("learned"),
        "timings_s": run["metrics"].get("timings_s"),
    }


def corrections_for(
    client: OpenAI, seed: int, count: int
) -> Iterator[tuple[Any, list[dict[str, Any]], dict[str, Any]]]:
    """(served answer, conversation, correction) for `count` prompts the agent gets wrong: a
    wrong first step becomes the calculator call; a right calculator call followed by a wrong
    final answer has its final answer corrected."""
    found = 0
    for task in ENV.tasks("train", 400, seed=seed):
        convo = messages(task.prompt)
        reply = ask(client, convo)
        got = first_call(reply.choices[0].message)
        expression = task.info["expression"]
        if got != ("calculator", {"expression": expression}):
            yield reply, convo, call("calculator", expression=expression)
        else:
            result = ENV.execute_tool("calculator", {"expression": expression})
            convo = [
                *convo,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {
                                "name": "calculator",
                                "arguments": json.dumps({"expression": expression}),
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": result},
            ]
            reply = ask(client, convo)
            answer = first_call(reply.choices[0].message)
            if (
                answer is not None
                and answer[0] == "final_answer"
                and str(answer[1].get("answer")) == task.answer
            ):
                continue
            yield (
                reply,
                convo,
                call(
                    "final_answer",
                    answer=float(task.answer) if "." in task.answer else int(task.answer),
                ),
            )
        found += 1
        if found == count:
            return


def continual(
    admin: Admin,
    base: str,
    tag: str,
    cycles: int,
    on_cycle: Any = None,
    schedule: dict[str, Any] | None = None,
) -> dict[str, Any]:
    slug = f"cl-{tag}"
    key = admin.tenant(slug)
    if schedule:
        admin.schedule(slug, **schedule)
    client = OpenAI(base_url=f"{base}/v1", api_key=key)
    traffic(client, 48, seed=2000)
    done: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"start_env": None, "cycles": rows}
    start_env: float | None = None
    for k in range(cycles):
        kinds = {"calculator": 0, "final_answer": 0}
        for reply, convo, target in corrections_for(client, seed=3000 + 97 * k, count=5):
            correct(base, key, reply.id, target)
            done.append((convo, target))
            kinds[target["tool_calls"][0]["function"]["name"]] += 1
        time.sleep(2)
        run = admin.cycle(slug)
        env = run["metrics"].get("signals", {}).get("environment", {})
        start_env = env.get("before") if start_env is None else start_env
        live_env = env.get("after") if run["status"] == "succeeded" else env.get("before")
        answered = [
            first_call(ask(client, convo).choices[0].message) == as_target(t) for convo, t in done
        ]
        # Every 5th correction of an agent is held out for evaluation and never trained on.
        trained = [a for i, a in enumerate(answered) if (i + 1) % 5 != 0]
        held = [a for i, a in enumerate(answered) if (i + 1) % 5 == 0]
        rows.append(
            {
                "cycle": k + 1,
                "status": run["status"],
                "decision": run["metrics"].get("decision"),
                "corrections_so_far": len(done),
                "correction_kinds": kinds,
                "retention": sum(answered) / len(answered),
                "retention_trained": sum(trained) / len(trained),
                "held_out_answered": sum(held) / len(held) if held else None,
                "env_live": live_env,
                "env_candidate": env.get("after"),
                "preservation": run["metrics"]
                .get("signals", {})
                .get("preservation", {})
                .get("agreement"),
                "trained_steps": run["metrics"].get("trained_steps"),
                "cycle_s": sum((run["metrics"].get("timings_s") or {}).values()),
            }
        )
        result["start_env"] = start_env
        print(json.dumps(rows[-1]), flush=True)
        if on_cycle is not None:
            on_cycle(result)
    return result


def says(message: Any, answer: str) -> bool:
    """Whether a reply answers ``answer``: as its text, or as any tool call argument's value."""
    if (message.content or "").strip() == answer:
        return True
    for c in message.tool_calls or []:
        try:
            args = json.loads(c.function.arguments)
        except json.JSONDecodeError:
            continue
        if isinstance(args, dict) and any(str(v).strip() == answer for v in args.values()):
            return True
    return False


def times_prompts(rng: Any, n: int, avoid: set[tuple[int, int]]) -> list[str]:
    """``n`` new "What is X times Y?" prompts whose answer is not 60."""
    out: list[str] = []
    while len(out) < n:
        x, y = rng.randint(2, 40), rng.randint(2, 40)
        if x * y != 60 and (x, y) not in avoid:
            avoid.add((x, y))
            out.append(f"What is {x} times {y}?")
    return out


def no_environment(admin: Admin, base: str, tag: str, seed: int) -> dict[str, Any]:
    import random

    slug = f"ne-{tag}"
    key = admin.tenant(slug, environment=None)
    client = OpenAI(base_url=f"{base}/v1", api_key=key)
    rng = random.Random(7000 + seed)
    seen: set[tuple[int, int]] = {(12, 5)}
    for prompt in times_prompts(rng, 20, seen):
        ask(client, messages(prompt))
    traffic(client, 20, seed=7000 + seed)
    wrong = ask(client, messages("What is 12 times 5?"))
    unseen = times_prompts(rng, 12, seen)
    parent_60 = sum(says(ask(client, messages(p)).choices[0].message, "60") for p in unseen)
    plain = seed % 2 == 0
    target = {"content": "60"} if plain else call("final_answer", answer=60)
    correct(base, key, wrong.id, target)
    time.sleep(2)
    started = time.monotonic()
    run = admin.cycle(slug)
    seconds = time.monotonic() - started
    live = [ask(client, messages(p)).choices[0].message for p in unseen]
    fixed = ask(client, messages("What is 12 times 5?")).choices[0].message
    signals = run["metrics"].get("signals", {})
    return {
        "correction": "plain 60" if plain else "final_answer(60)",
        "status": run["status"],
        "decision": run["metrics"].get("decision"),
        "failed_signal": run["metrics"].get("failed_signal"),
        "live_version": admin.live_version(slug),
        "copies": signals.get("copies"),
        "preservation": signals.get("preservation", {}).get("agreement"),
        "preservation_n": signals.get("preservation", {}).get("n"),
        "unseen": len(unseen),
        "parent_answers_60": parent_60,
        "live_answers_60": sum(says(m, "60") for m in live),
        "corrected_prompt_answers_60": says(fixed, "60"),
        "cycle_s": round(seconds, 1),
    }


def forgetting(admin: Admin, base: str, tag: str) -> dict[str, Any]:
    slug = f"fg-{tag}"
    key = admin.tenant(slug)
    client = OpenAI(base_url=f"{base}/v1", api_key=key)
    traffic(client, 48, seed=4000)
    defaults = admin.schedule(slug)
    admin.schedule(
        slug, learning_rate=defaults["learning_rate"] * 10, kl_coef=0.0, replay_share=0.0
    )
    for reply, _, target in corrections_for(client, seed=5000, count=5):
        correct(base, key, reply.id, target)
    time.sleep(2)
    run = admin.cycle(slug)
    return {
        "status": run["status"],
        "decision": run["metrics"].get("decision"),
        "failed_signal": run["metrics"].get("failed_signal"),
        "signals": run["metrics"].get("signals"),
        "live_version": admin.live_version(slug),
    }


def empty(admin: Admin, base: str, tag: str) -> dict[str, Any]:
    slug = f"em-{tag}"
    key = admin.tenant(slug, environment=None)
    client = OpenAI(base_url=f"{base}/v1", api_key=key)
    wrong = ask(client, messages(README_PROMPT))
    correct(base, key, wrong.id, call("calculator", expression=README_FIX))
    time.sleep(2)
    run = admin.cycle(slug)
    return {
        "status": run["status"],
        "decision": run["metrics"].get("decision"),
        "live_version": admin.live_version(slug),
    }


# ---- report ----------------------------------------------------------------------------------------
def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(data: dict[str, Any]) -> str:
    lines = []
    runs = data.get("readme", [])
    if runs:
        lines += [
            f"README flow ({len(runs)} repeats)",
            f"  corrected prompt answered as corrected: {sum(r['corrected_answered_as_corrected'] for r in runs)}/{len(runs)}",
            f"  promoted: {sum(r['status'] == 'succeeded' for r in runs)}/{len(runs)}",
            f"  env accuracy parent: {mean_sd([r['env_before'] for r in runs if r['env_before'] is not None])}",
            f"  env accuracy new:    {mean_sd([r['env_after'] for r in runs if r['env_after'] is not None])}",
            f"  preservation agreement: {mean_sd([r['preservation'] for r in runs if r['preservation'] is not None])}",
            f"  held-back prompts graded by the environment: {sum(r.get('preservation_graded') or 0 for r in runs)}"
            f" of {sum(r['preservation_n'] or 0 for r in runs)}; changed but no worse (kept): "
            f"{sum(r.get('preservation_no_worse') or 0 for r in runs)}",
            f"  near prompts answered '60': {sum(r['near_answer_60'] for r in runs)}",
            f"  cycle seconds: {mean_sd([r['cycle_s'] for r in runs])}",
        ]
    if data.get("continual"):
        c = data["continual"]
        lines.append(f"Continual (start env accuracy {c['start_env']})")
        lines.append(
            "  cycle status            corrections retention(all) retention(trained) env_live preservation"
        )
        for r in c["cycles"]:
            lines.append(
                f"  {r['cycle']:>5} {r['status']:<17} {r['corrections_so_far']:>11} {r['retention']:>14.3f} {r['retention_trained']:>18.3f} "
                f"{r['env_live'] if r['env_live'] is not None else '-':>8} {r['preservation'] if r['preservation'] is not None else '-':>12}"
            )
    ne = data.get("no_environment", [])
    if ne:
        lines.append(
            f"No environment ({len(ne)} repeats): status, live answers 60 of unseen (parent), copies"
        )
        for r in ne:
            c = r.get("copies") or {}
            lines.append(
                f"  {r['correction']:<17} {r['status']:<10} {r['live_answers_60']}/{r['unseen']} "
                f"({r['parent_answers_60']})  copies {c.get('before')}->{c.get('after')} of "
                f"{c.get('n')} (allowed {c.get('allowed')}): {r['decision']}"
            )
    for name in ("forgetting", "empty"):
        if data.get(name):
            d = data[name]
            lines.append(
                f"{name}: {d['status']}, live version {d['live_version']}: {d['decision']}"
            )
    for g in data.get("grid", []):
        lines.append(
            f"grid {json.dumps(g['schedule'])}: corrected={g['corrected_answered_as_corrected']} "
            f"env {g['env_before']}->{g['env_after']} preservation {g['preservation']} {g['cycle_s']} s"
        )
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (data.get("continual") or {}).get("cycles") or []
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    x = [r["cycle"] for r in rows]
    ax.plot(
        x,
        [r["retention_trained"] for r in rows],
        "o-",
        label="trained corrections answered as corrected",
    )
    ax.plot(
        x,
        [r["retention"] for r in rows],
        "^-",
        alpha=0.6,
        label="all corrections (1 in 5 held out)",
    )
    ax.plot(x, [r["env_live"] for r in rows], "s--", label="held-out calculator accuracy (live)")
    start = data["continual"]["start_env"]
    if start is not None:
        ax.axhline(start, color="grey", linestyle=":", label="starting accuracy")
        ax.axhline(start - 0.01, color="red", linestyle=":", linewidth=0.8, label="start - 1 point")
    ax.set_xlabel("cycle (5 new corrections each)", fontsize=11)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=9, loc="lower right")
    ax.set_title("Continual learning on the bundled model", fontsize=12)
    fig.tight_layout()
    fig.savefig(path)


def parse_schedule(text: str) -> dict[str, Any]:
    """``steps:learning_rate:kl_coef:replay_share`` as a schedule update."""
    steps, lr, kl, replay = (float(x) for x in text.split(":"))
    return {"steps": int(steps), "learning_rate": lr, "kl_coef": kl, "replay_share": replay}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument(
        "--only",
        default="readme,continual,forgetting,empty",
        help="comma-separated scenarios (readme, continual, forgetting, empty, no_environment,"
        " grid)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "continual.json")
    parser.add_argument(
        "--schedule",
        "--readme-schedule",
        dest="readme_schedule",
        default=None,
        help="steps:learning_rate:kl_coef:replay_share for the readme and continual scenarios"
        " (default: the agent's default schedule); their results are kept under"
        " readme_schedules / continual_schedules, by this string",
    )
    parser.add_argument(
        "--traffic",
        type=int,
        default=48,
        help="untouched requests before the readme scenario's correction; other than 48, its"
        " results are kept under readme_traffic, by this number (with --schedule, under"
        " readme_schedules as SCHEDULE@N)",
    )
    parser.add_argument(
        "--grid-points",
        default="30:1e-3:0:0.5,30:1e-3:1:0.5,30:1e-3:4:0.5,30:3e-3:1:0.5,15:1e-3:1:0.5",
        help="steps:learning_rate:kl_coef:replay_share, comma-separated",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    run_tag = uuid.uuid4().hex[:6]
    data: dict[str, Any] = {}
    if args.out.exists():  # scenarios not rerun keep their last results
        data = json.loads(args.out.read_text())
    data["meta"] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs",
        "scenarios": sorted(only),
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1, default=str))

    with live_stack() as (base, password):
        admin = Admin(base, password)
        schedule = parse_schedule(args.readme_schedule) if args.readme_schedule else {}
        if "readme" in only:
            runs: list[dict[str, Any]] = []
            if schedule:
                key = args.readme_schedule + (f"@{args.traffic}" if args.traffic != 48 else "")
                data.setdefault("readme_schedules", {})[key] = runs
            elif args.traffic != 48:
                data.setdefault("readme_traffic", {})[str(args.traffic)] = runs
            else:
                data["readme"] = runs
            for i in range(args.repeats):
                runs.append(
                    readme_flow(
                        admin, base, f"{run_tag}-{i}", seed=i, untouched=args.traffic, **schedule
                    )
                )
                print(json.dumps(runs[-1], default=str), flush=True)
                save()
        if "empty" in only:
            data["empty"] = empty(admin, base, run_tag)
            save()
        if "no_environment" in only:
            data["no_environment"] = ne_runs = []
            for i in range(args.repeats):
                ne_runs.append(no_environment(admin, base, f"{run_tag}-{i}", seed=i))
                print(json.dumps(ne_runs[-1], default=str), flush=True)
                save()
        if "forgetting" in only:
            data["forgetting"] = forgetting(admin, base, run_tag)
            save()
        if "continual" in only:

            def keep(partial: dict[str, Any]) -> None:  # written after every cycle
                if schedule:
                    data.setdefault("continual_schedules", {})[args.readme_schedule] = partial
                else:
                    data["continual"] = partial
                save()

            keep(continual(admin, base, run_tag, args.cycles, keep, schedule))
        if "grid" in only:
            grid = data.setdefault("grid", [])
            for i, point in enumerate(args.grid_points.split(",")):
                schedule = parse_schedule(point)
                row = readme_flow(admin, base, f"{run_tag}-g{i}", seed=i, **schedule)
                grid[:] = [g for g in grid if g["schedule"] != schedule] + [row]
                print(json.dumps(row, default=str), flush=True)
                save()
    print(table(data))
    plot(data, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
