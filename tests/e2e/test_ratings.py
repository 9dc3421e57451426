"""Ratings move the model through the whole stack: an operator's thumbs-down on one served
answer and thumbs-up on another, one learning cycle with the default schedule, and the
version it trains gives the rated answers less and more probability than its parent did,
measured on the engine itself (each answer's log-probability, token by token, as it was
served). The cycle-after-cycle form (each cycle moves a rating further) is
`tests/unit/trainer/test_objective.py::test_each_cycle_moves_a_rated_answer_further`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import unit_of_work
from app.models import AdapterVersion, TrainingExample
from app.models.enums import ExampleKind
from app.sampler.launcher import EngineProcess
from tests.helpers.engine import SERVED_MODEL_NAME
from tests.helpers.gateway import Gateway, make_tenant
from tests.helpers.learning import greedy, prompt, run_cycle_and_wait, train_examples
from tests.helpers.worker import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

DOWN_BOUND = -1.0
"""Nats a thumbs-down must take off its answer in one cycle at the default schedule (measured:
docs/LEARNING.md, "Ratings")."""


def _logprob(engine: EngineProcess, model: str, prompt_ids: list[int], answer: list[int]) -> float:
    """log p(answer | prompt) on the engine, summed over the answer's tokens."""
    body = {
        "model": model,
        "prompt": [*prompt_ids, *answer],
        "max_tokens": 1,
        "temperature": 0,
        "prompt_logprobs": 0,
    }
    reply = httpx.post(f"{engine.url}/v1/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    scored = reply.json()["choices"][0]["prompt_logprobs"][len(prompt_ids) :]
    return sum(entry[str(token)]["logprob"] for entry, token in zip(scored, answer, strict=True))


def _load(engine: EngineProcess, version: AdapterVersion) -> str:
    path = Path(version.path)
    path = path if path.is_absolute() else get_settings().adapter_dir / path
    name = f"rated-{version.id}"
    loaded = httpx.post(
        f"{engine.url}/v1/load_lora_adapter",
        json={"lora_name": name, "lora_path": str(path)},
        timeout=120,
    )
    assert loaded.status_code == 200, loaded.text
    return name


def test_a_cycle_moves_rated_answers_down_and_up(
    gateway: Gateway, worker: object, engine: EngineProcess
) -> None:
    fx = make_tenant("rated", rank=16, alpha=32)
    down, up = greedy(gateway, fx, prompt(71)), greedy(gateway, fx, prompt(72))
    for reply, thumbs in ((down, "down"), (up, "up")):
        made = httpx.post(
            f"{gateway.api_base}/feedback",
            headers={"Authorization": f"Bearer {fx.key}"},
            json={"interaction_id": reply.id, "kind": "rating", "rating": {"thumbs": thumbs}},
        )
        assert made.status_code == 201, made.text
    wait_for(lambda: train_examples(fx) >= 2)
    with unit_of_work() as session:
        rows = session.scalars(
            select(TrainingExample).where(
                TrainingExample.agent_id == fx.agent.id,
                TrainingExample.kind == ExampleKind.reward,
            )
        ).all()
        rated: dict[str, Any] = {
            "down" if r.payload["reward"] < 0 else "up": r.payload for r in rows
        }
    assert set(rated) == {"down", "up"}
    run = run_cycle_and_wait(fx)
    with unit_of_work() as session:
        version = session.get(AdapterVersion, run.candidate_version_id)
        assert version is not None, (run.status, run.metrics.get("decision"))
        candidate = _load(engine, version)
    moved = {
        thumbs: _logprob(engine, candidate, p["prompt_token_ids"], p["completion_token_ids"])
        - _logprob(engine, SERVED_MODEL_NAME, p["prompt_token_ids"], p["completion_token_ids"])
        for thumbs, p in rated.items()
    }
    tokens = {t: len(p["completion_token_ids"]) for t, p in rated.items()}
    print({"status": run.status, "moved_nats": moved, "tokens": tokens})
    assert moved["down"] < DOWN_BOUND, moved
    assert moved["up"] > 0, moved
