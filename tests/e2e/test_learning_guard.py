"""The learning guard on an agent without an environment: one correction must never go live
as an answer copied onto every prompt of its template."""

from __future__ import annotations

import json
import random

import pytest

from app.core.db import unit_of_work
from app.models import Agent
from tests.helpers.figures import record
from tests.helpers.gateway import Gateway, TenantFixture, make_tenant
from tests.helpers.learning import (
    ENV,
    answer_call,
    as_dict,
    correct,
    greedy,
    run_cycle_and_wait,
    says,
    train_examples,
)
from tests.helpers.worker import wait_for

pytestmark = pytest.mark.slow

CORRECTED = "What is 12 times 5?"


def _ask(gateway: Gateway, fx: TenantFixture, text: str):  # type: ignore[no-untyped-def]
    messages = [{"role": "system", "content": ENV.system_prompt}, {"role": "user", "content": text}]
    return greedy(gateway, fx, messages)


def _times(rng: random.Random, n: int, avoid: set[tuple[int, int]]) -> list[str]:
    """``n`` "What is X times Y?" prompts whose answer is never 60."""
    out: list[str] = []
    while len(out) < n:
        x, y = rng.randint(2, 40), rng.randint(2, 40)
        if x * y != 60 and (x, y) not in avoid:
            avoid.add((x, y))
            out.append(f"What is {x} times {y}?")
    return out


@pytest.mark.timeout(1500)
def test_an_agent_without_environment_never_goes_live_copying_a_correction(
    gateway: Gateway, worker: object
) -> None:
    """The issue's trial: 20 "What is X times Y?" and 20 word problems served untouched, one
    "What is 12 times 5?" corrected into final_answer(60), one cycle with the default
    schedule. Whatever the cycle decides, the live agent must not answer 60 to other
    prompts of the template; the test measures that itself on 12 prompts nobody served. With
    the copy guard the candidate mostly does not copy (0 of 21 held-back near prompts in one
    run), and the gate may still refuse it on another signal or find nothing to compare."""
    fx = make_tenant("copyguard", rank=16, alpha=32)
    rng = random.Random(30)
    seen: set[tuple[int, int]] = {(12, 5)}
    for text in _times(rng, 20, seen):
        _ask(gateway, fx, text)
    for task in ENV.tasks("train", 20, seed=30):
        greedy(gateway, fx, ENV.initial_messages(task))
    wrong = _ask(gateway, fx, CORRECTED)
    gateway.drain()
    unseen = _times(rng, 12, seen)
    parent_60 = sum(says(as_dict(_ask(gateway, fx, t).choices[0].message), "60") for t in unseen)
    correct(gateway, fx, wrong.id, answer_call("60"))
    wait_for(lambda: train_examples(fx) >= 1)

    run = run_cycle_and_wait(fx)
    with unit_of_work() as session:
        agent = session.get(Agent, fx.agent.id)
        assert agent is not None
        live = agent.live_version_id
    after = [as_dict(_ask(gateway, fx, t).choices[0].message) for t in unseen]
    live_60 = sum(says(m, "60") for m in after)
    copies = run.metrics["signals"].get("copies") or {}
    seen_figures = {
        "status": run.status,
        "decision": run.metrics.get("decision"),
        "failed_signal": run.metrics.get("failed_signal"),
        "copies": copies,
        "unseen": len(unseen),
        "parent_answers_60": parent_60,
        "live_answers_60": live_60,
    }
    print(json.dumps(seen_figures))  # shown when an assertion below fails
    record("no_environment_copy_guard", seen_figures)
    assert copies.get("near", 0) >= 5, run.metrics  # the template's prompts were looked at
    # The promise: the live agent answers 60 to no more of the template's prompts than before.
    assert live_60 <= parent_60, (live_60, parent_60, run.metrics["decision"])
    if run.status == "succeeded":  # promoted: it learned the correction without copying it
        assert live is not None
        fixed = as_dict(_ask(gateway, fx, CORRECTED).choices[0].message)
        assert says(fixed, "60"), fixed
        assert copies["after"] <= copies["allowed"], copies
    else:  # nothing went live; a refusal names its signal, a copy refusal shows the copies
        assert run.status in ("rejected", "needs_evaluation") and live is None, run.metrics
        if run.status == "rejected":
            assert run.metrics["failed_signal"], run.metrics["decision"]
        if run.metrics.get("failed_signal") == "copies":
            assert copies["after"] > copies["allowed"] and copies["copied"], copies
