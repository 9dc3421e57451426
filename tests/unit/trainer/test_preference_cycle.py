"""Preferences train under the default schedule: a cycle of one preference pair (and the KL
term on untouched prompts) moves the preferred answer's log-probability against the rejected
one, on the bundled model, with the objective a cycle builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from app.cycles.schemas import ScheduleUpdate
from app.training.client import LEARNED_MARGIN, Examples, LoraShape, TrainingRequest
from trainer.batch import Batch
from trainer.config import LoraSettings
from trainer.engine import TrainingEngine
from trainer.envs.calculator import CalculatorEnvironment
from trainer.objective import ObjectiveWork, accumulate_round, build_batches, objective_weights

MODEL = Path(__file__).resolve().parents[3] / "weights" / "clora-tiny"
ENV = CalculatorEnvironment()
SYSTEM = {"role": "system", "content": ENV.system_prompt}


def _ask(text: str) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": text}]


def _call(name: str, arguments: dict) -> dict:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": function}],
    }


@pytest.mark.slow
def test_a_preference_only_cycle_with_the_default_schedule_moves_the_pair() -> None:
    schedule = ScheduleUpdate()  # the defaults an agent gets
    pair = {
        "messages": _ask("Ana has 45 pens and gets 855 more. How many pens does Ana have now?"),
        "tools": ENV.tools(),
        "chosen": _call("calculator", {"expression": "45+855"}),
        "rejected": _call("final_answer", {"answer": 10}),
    }
    untouched = [  # the KL term's rows: logged answers to other prompts
        {
            "messages": _ask(f"Tom has {a} cards and gets {b} more. How many cards now?"),
            "tools": ENV.tools(),
            "output": _call("final_answer", {"answer": a + b}),
        }
        for a, b in ((12, 30), (7, 91), (66, 5), (40, 40))
    ]
    request = TrainingRequest(
        LoraShape(16, 32, ("q_proj", "k_proj", "v_proj", "o_proj")),
        None,
        Examples(dpo=[pair], kl=untouched),
        dict(schedule.loss_mixture),
        schedule.steps,
        schedule.learning_rate,
        kl_coef=schedule.kl_coef,
        stop_margin=LEARNED_MARGIN,
    )
    # The request trains: the default mixture gives preferences a weight.
    assert request.nothing_to_train() is None, request.nothing_to_train()

    engine = TrainingEngine(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(MODEL, local_files_only=True)
    batches = build_batches(tokenizer, {"dpo": [pair], "kl": untouched})
    dpo = batches["dpo"]

    def gap(adapter: str) -> float:
        """log p(chosen) - log p(rejected) over the answer tokens."""
        sums = []
        for ids, mask in (
            (dpo.input_ids, dpo.loss_mask),
            (dpo.rejected_input_ids, dpo.rejected_loss_mask),
        ):
            assert ids is not None and mask is not None
            logprobs = engine.sample_logprobs(adapter, Batch(input_ids=ids, loss_mask=mask))[0]
            sums.append(sum(lp for lp, m in zip(logprobs, mask[0], strict=True) if m))
        return sums[0] - sums[1]

    lora = request.lora
    engine.create_adapter("pref", LoraSettings(lora.rank, lora.alpha, lora.target_modules), seed=0)
    before = gap("pref")
    work = ObjectiveWork("pref", batches, objective_weights(request.mixture, request.kl_coef))
    for _ in range(request.steps):
        accumulate_round(engine, [work])
        engine.optim_step("pref", request.lr, max_grad_norm=1.0)  # as the trainer service steps
    after = gap("pref")
    print({"before": before, "after": after, "mixture": request.mixture})  # shown on failure
    # A documented bound (docs/LEARNING.md): the preferred answer gains at least one nat
    # against the rejected one in one default cycle.
    assert after - before >= 1.0, (before, after)


@pytest.mark.slow
def test_the_copy_guard_trains_near_prompts_away_from_the_corrections_answer() -> None:
    """The README's worry, issue 30's trial: "What is 12 times 5?" corrected into
    final_answer(60) spreads to every "What is X times Y?". The same cycle with the default
    copy guard (pairs on near prompts: the answer served over the correction's) leaves the
    corrected answer less likely on near prompts than without it, and still learns it."""
    schedule = ScheduleUpdate()
    fix = _call("final_answer", {"answer": 60})
    correction = {"messages": [*_ask("What is 12 times 5?"), fix], "tools": ENV.tools()}
    near = [(7, 8), (9, 3), (14, 6), (25, 4)]
    pairs = [
        {
            "messages": _ask(f"What is {a} times {b}?"),
            "tools": ENV.tools(),
            "chosen": _call("final_answer", {"answer": a}),  # a wrong answer, as served
            "rejected": fix,
        }
        for a, b in near
    ]
    engine = TrainingEngine(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(MODEL, local_files_only=True)
    probe = build_batches(tokenizer, {"away": pairs})["away"]
    learned = build_batches(tokenizer, {"sft": [correction]})["sft"]

    def copy_logprob(adapter: str) -> float:
        """Mean log-probability of the corrected answer on the near prompts."""
        assert probe.rejected_input_ids is not None and probe.rejected_loss_mask is not None
        rows = Batch(input_ids=probe.rejected_input_ids, loss_mask=probe.rejected_loss_mask)
        logprobs = engine.sample_logprobs(adapter, rows)
        return sum(
            sum(lp for lp, m in zip(lps, mask, strict=True) if m)
            for lps, mask in zip(logprobs, rows.loss_mask, strict=True)
        ) / len(pairs)

    def fix_logprob(adapter: str) -> float:
        lps = engine.sample_logprobs(adapter, learned)[0]
        return sum(lp for lp, m in zip(lps, learned.loss_mask[0], strict=True) if m)

    after = {}
    for guard in (0.0, schedule.copy_guard):
        name = f"guard-{guard}"
        engine.create_adapter(name, LoraSettings(16, 32, ("q_proj", "k_proj", "v_proj")), seed=0)
        mixture = {**schedule.loss_mixture, "away": guard}
        batches = build_batches(tokenizer, {"sft": [correction], "away": pairs})
        work = ObjectiveWork(name, batches, objective_weights(mixture, schedule.kl_coef))
        for _ in range(40):
            accumulate_round(engine, [work])
            engine.optim_step(name, schedule.learning_rate, max_grad_norm=1.0)
        after[guard] = {"copy": copy_logprob(name), "fix": fix_logprob(name)}
    print(after)  # shown on failure
    unguarded, guarded = after[0.0], after[schedule.copy_guard]
    assert guarded["copy"] < unguarded["copy"] - 1.0, after
    # The correction itself is learned as well with the guard as without.
    assert guarded["fix"] > unguarded["fix"] - 0.5, after
