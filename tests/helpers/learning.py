"""The learning loop's test vocabulary: calculator prompts, greedy calls through the gateway, corrections and schedules."""

from __future__ import annotations

import json

import httpx

from app.core.db import unit_of_work
from app.cycles import service as cycles
from app.cycles.schemas import ScheduleUpdate
from app.datasets.service import import_examples
from app.models import CycleRun
from app.models.enums import ExampleSplit
from tests.helpers.gateway import Gateway, TenantFixture
from tests.helpers.worker import wait_for
from trainer.envs import CalculatorEnvironment

ENV = CalculatorEnvironment()


TOOLS = ENV.tools()


def prompt(seed: int) -> list[dict]:
    return ENV.initial_messages(ENV.tasks("test", 1, seed=seed)[0])


def greedy(
    gateway: Gateway, fx: TenantFixture, messages: list[dict], model: str | None = None, **extra
):  # type: ignore[no-untyped-def]
    return fx.client(gateway).chat.completions.create(
        model=model or fx.agent.name,
        messages=messages,
        tools=TOOLS,
        temperature=0,
        max_tokens=64,
        **extra,
    )


def decided_by(completion) -> float:  # type: ignore[no-untyped-def]
    """The smallest gap, in nats, between the token a greedy answer chose and the runner-up,
    over all its tokens (asked with ``logprobs=True, top_logprobs=2``): how close the answer
    came to being another one."""
    gaps = [
        top[0].logprob - top[1].logprob
        for token in completion.choices[0].logprobs.content
        if len(top := token.top_logprobs) >= 2
    ]
    assert gaps, "the engine returned no runner-up tokens"
    return min(gaps)


def as_dict(message) -> dict:  # type: ignore[no-untyped-def]
    out: dict = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in message.tool_calls
        ]
    return out


def golden(
    gateway: Gateway, fx: TenantFixture, seeds: list[int], split: ExampleSplit = ExampleSplit.eval
) -> None:
    """Examples of what the live version answers now: golden evaluation examples (it scores
    1.0 on them), or with ``split=train`` the agent's existing dataset that anchors training."""
    lines = [
        json.dumps(
            {
                "messages": [
                    *prompt(s),
                    as_dict(greedy(gateway, fx, prompt(s)).choices[0].message),
                ],
                "tools": TOOLS,
            }
        )
        for s in seeds
    ]
    with unit_of_work() as session:
        import_examples(session, fx.tenant.id, fx.agent.id, lines, split)


def run_cycle_and_wait(fx: TenantFixture, timeout_s: float = 1200) -> CycleRun:
    """Start the agent's cycle and wait for it to end. The wait is generous on purpose: a
    README-flow cycle took 385 s on this 2-core machine beside a second stack and a suite
    (bench/continual.py), more than the 300 s this waited once; each test's own
    pytest timeout still bounds it."""
    with unit_of_work() as session:
        run, created = cycles.start_cycle(session, fx.tenant.id, fx.agent.id)
        assert created
        run_id = run.id

    def finished() -> CycleRun | None:
        with unit_of_work() as session:
            row = cycles.get_run(session, fx.tenant.id, run_id)
            session.expunge(row)
            return row if row.status not in ("queued", "running") else None

    return wait_for(finished, timeout_s=timeout_s, interval_s=1)


def correct(gateway: Gateway, fx: TenantFixture, completion_id: str, message: dict) -> None:
    resp = httpx.post(
        f"{gateway.api_base}/feedback",
        headers={"Authorization": f"Bearer {fx.key}"},
        json={"interaction_id": completion_id, "kind": "correction", "correction": message},
    )
    assert resp.status_code == 201, resp.text


def schedule(fx: TenantFixture, **changes: object) -> None:
    with unit_of_work() as session:
        cycles.update_schedule(
            session,
            fx.tenant.id,
            fx.agent.id,
            ScheduleUpdate(**changes),
        )


def answer_call(value: str) -> dict:
    return {
        "content": None,
        "tool_calls": [
            {
                "id": "call_fix",
                "type": "function",
                "function": {"name": "final_answer", "arguments": json.dumps({"answer": value})},
            }
        ],
    }


def calculator_call(seed: int) -> dict:
    """The right first step for a task: the calculator with the task's expression."""
    task = ENV.tasks("test", 1, seed=seed)[0]
    args = json.dumps({"expression": task.info["expression"]})
    return {
        "content": None,
        "tool_calls": [
            {
                "id": "call_fix",
                "type": "function",
                "function": {"name": "calculator", "arguments": args},
            }
        ],
    }


def first_call(message: dict) -> dict | None:
    calls = message.get("tool_calls") or []
    return calls[0]["function"] if calls else None


def says(message: dict, answer: str) -> bool:
    """Whether an assistant message answers ``answer``: as its text, or as the value of any
    tool call's argument (``final_answer({"answer": 60})`` says "60")."""
    if (message.get("content") or "").strip() == answer:
        return True
    for call in message.get("tool_calls") or []:
        try:
            args = json.loads(call["function"]["arguments"])
        except json.JSONDecodeError:
            continue
        if isinstance(args, dict) and any(str(v).strip() == answer for v in args.values()):
            return True
    return False


def train_examples(fx: TenantFixture) -> int:
    """How many training examples (split ``train``) the agent's feedback has compiled into."""
    from sqlalchemy import func, select

    from app.models import TrainingExample

    with unit_of_work() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(TrainingExample)
                .where(TrainingExample.agent_id == fx.agent.id, TrainingExample.split == "train")
            )
            or 0
        )
