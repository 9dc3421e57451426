"""The promotion gate's rule, on measured signals: it never promotes on no evidence."""

from __future__ import annotations

from typing import Any

from app.adapters.signals import Signals
from app.cycles import gate
from app.cycles.gate import agreement_upper_bound
from app.cycles.schemas import PromotionRule
from app.models.enums import RunStatus

RULE = PromotionRule().model_dump()


def decide(measured: dict[str, Any], rule: dict[str, Any]) -> gate.Verdict:
    """The gate on signals and a rule written as the JSON they are recorded as."""
    return gate.decide(Signals.model_validate(measured), PromotionRule(**rule))


def signals(**over: dict) -> dict[str, dict]:
    base = {
        "corrections": {"n": 1, "before": 0.0, "after": 1.0},
        "held_out": {"n": 0, "before": None, "after": None},
        "preservation": {"n": 0, "agreement": None, "min": 0.95},
    }
    return {**base, **over}


def test_no_evaluation_signal_needs_evaluation_and_names_what_to_add() -> None:
    verdict = decide(signals(), RULE)
    assert verdict.status == RunStatus.needs_evaluation and not verdict.promote
    assert "--split eval" in verdict.reason and "environment" in verdict.reason


def test_too_few_examples_do_not_count_as_evidence() -> None:
    few = signals(
        held_out={"n": 4, "before": 1.0, "after": 1.0},
        preservation={"n": 4, "agreement": 1.0, "min": 0.95},
    )
    assert decide(few, RULE).status == RunStatus.needs_evaluation
    assert decide(few, {**RULE, "min_examples": 4}).status == RunStatus.succeeded


def test_each_evaluation_signal_can_fail_the_candidate_and_is_named() -> None:
    cases = {
        "held_out": {"held_out": {"n": 10, "before": 0.9, "after": 0.7}},
        "preservation": {"preservation": {"n": 40, "agreement": 0.8, "min": 0.95}},
        "environment": {
            "environment": {"name": "calculator", "n": 200, "before": 0.41, "after": 0.395}
        },
    }
    for name, over in cases.items():
        verdict = decide(signals(**over), RULE)
        assert verdict.status == RunStatus.rejected and verdict.failed_signal == name
        assert verdict.reason.startswith(name)


def test_passing_signals_promote_and_say_which() -> None:
    ok = signals(
        preservation={"n": 20, "agreement": 0.95, "min": 0.95},
        environment={"name": "calculator", "n": 200, "before": 0.41, "after": 0.405},
    )
    verdict = decide(ok, RULE)
    assert verdict.promote and "preservation" in verdict.reason and "environment" in verdict.reason


def test_the_rule_knobs_move_the_decision() -> None:
    env = {"name": "calculator", "n": 200, "before": 0.5, "after": 0.47}
    assert decide(signals(environment=env), RULE).status == RunStatus.rejected
    assert decide(signals(environment=env), {**RULE, "max_regression": 0.05}).promote
    kept = {"n": 40, "agreement": 0.8, "min": 0.85}
    assert decide(signals(preservation=kept), RULE).status == RunStatus.rejected
    assert decide(signals(preservation=kept), {**RULE, "preserve_min": 0.85}).promote
    same = signals(
        corrections={"n": 2, "before": 0.5, "after": 0.5},
        preservation={"n": 20, "agreement": 1.0, "min": 0.95},
    )
    assert decide(same, RULE).failed_signal == "corrections"
    assert decide(same, {**RULE, "require_improvement": False}).promote


def test_preservation_refuses_on_evidence_not_on_one_changed_answer() -> None:
    """The check compares the upper end of the agreement's one-sided 90% Wilson interval with
    preserve_min: one change in six is no evidence; three in six, or all, are; and the same
    share weighs more on more prompts. (The tolerance on the agreement itself is lifted here;
    the next test covers it.)"""
    rule = {**RULE, "preserve_min": 0.85, "preserve_tolerance": 1.0}

    def verdict(kept: int, n: int) -> RunStatus:
        return decide(signals(preservation={"n": n, "agreement": kept / n}), rule).status

    assert verdict(5, 6) == RunStatus.succeeded
    assert verdict(3, 6) == RunStatus.rejected
    assert verdict(0, 20) == RunStatus.rejected
    assert verdict(15, 20) == RunStatus.succeeded
    assert verdict(75, 100) == RunStatus.rejected  # the same 75%, on five times the prompts
    assert agreement_upper_bound(5 / 6, 6) > 0.85 > agreement_upper_bound(3 / 6, 6)
    assert agreement_upper_bound(1.0, 5) == 1.0
    refused = decide(signals(preservation={"n": 6, "agreement": 0.5}), rule)
    assert "with 90% confidence" in refused.reason and refused.failed_signal == "preservation"


def test_cli_names_the_bound_the_gate_compared_when_agreement_is_below_the_minimum() -> None:
    from app.cli.learning import signal_lines

    def line(kept: int, n: int) -> str:
        rate = kept / n
        signal = {"n": n, "agreement": rate, "min": 0.95}
        signal["upper_bound"] = agreement_upper_bound(rate, n)
        return signal_lines(Signals.model_validate({"preservation": signal}))[0]

    assert line(21, 23) == (
        "preservation agreement 91.3% (min 95%; with 90% confidence up to 96.3%, which the gate"
        " compares), n=23"
    )
    assert line(40, 40) == "preservation agreement 100.0% (min 95%), n=40"
    few = {"n": 3, "agreement": 2 / 3, "min": 0.95, "min_examples": 5, "upper_bound": 0.9}
    assert signal_lines(Signals.model_validate({"preservation": few})) == [
        "preservation agreement 66.7% (min 95%; too few to count, under 5), n=3"
    ]


def test_cli_lists_the_changed_held_back_answers_under_preservation() -> None:
    from app.cli.learning import signal_lines

    changed = {"prompt": "What is 2+2?", "parent": "4", "candidate": "5"}
    signal = {"n": 40, "agreement": 39 / 40, "min": 0.95, "upper_bound": 1.0, "changed": [changed]}
    assert signal_lines(Signals.model_validate({"preservation": signal})) == [
        "preservation agreement 97.5% (min 95%), n=40",
        "  changed: 'What is 2+2?': 4 -> 5",
    ]


def test_preservation_needs_the_agreement_measured_near_the_minimum_too() -> None:
    """15 of 17 (88%): the bound (96.7%) allows 95%, the agreement is below 95% - 5%."""

    def verdict(kept: int, n: int, rule: dict = RULE) -> RunStatus:
        return decide(signals(preservation={"n": n, "agreement": kept / n}), rule).status

    assert agreement_upper_bound(15 / 17, 17) >= 0.95
    assert verdict(15, 17) == RunStatus.rejected
    assert verdict(16, 17) == RunStatus.succeeded
    assert verdict(29, 32) == RunStatus.succeeded  # 90.6%, bound 97.1%
    assert verdict(58, 64) == RunStatus.rejected  # 90.6%, bound 94.4%: the bound refuses
    # The tolerance is a knob with an effect.
    assert verdict(15, 17, {**RULE, "preserve_tolerance": 0.07}) == RunStatus.succeeded
    refused = decide(signals(preservation={"n": 17, "agreement": 15 / 17}), RULE)
    assert "below 90%" in refused.reason and refused.failed_signal == "preservation"


def test_a_signal_too_small_to_count_still_vetoes_a_collapse() -> None:
    """Under min_examples a signal is no evidence to promote on, but a fall beyond its own
    noise refuses: held-out 4 of 4 to 0 of 4 refuses, to 3 of 4 does not."""
    env = {"name": "calculator", "n": 200, "before": 0.41, "after": 0.42}
    collapse = signals(held_out={"n": 4, "before": 1.0, "after": 0.0}, environment=env)
    verdict = decide(collapse, RULE)
    assert verdict.status == RunStatus.rejected and verdict.failed_signal == "held_out"
    assert "beyond their noise" in verdict.reason
    one_off = signals(held_out={"n": 4, "before": 1.0, "after": 0.75}, environment=env)
    assert decide(one_off, RULE).promote
    kept_thin = signals(preservation={"n": 4, "agreement": 0.0}, environment=env)
    assert decide(kept_thin, RULE).failed_signal == "preservation"
    kept_ok = signals(preservation={"n": 4, "agreement": 0.75}, environment=env)
    assert decide(kept_ok, RULE).promote
    # The rule's own knobs bound the veto: a rule that accepts any fall never refuses on it.
    lenient = {**RULE, "max_regression": 1.0, "preserve_min": 0.0}
    assert decide(collapse, lenient).promote
    assert decide(kept_thin, lenient).promote


def test_copies_of_a_correction_onto_other_prompts_refuse_beyond_the_parents_rate() -> None:
    """ "What is 12 times 5?" corrected to final_answer(60), and the candidate answers 60 to
    other "What is X times Y?": refused by the copies signal, named; one copy (which may be
    a right answer that equals the correction) is allowed when the parent made none."""
    from app.cycles.gate import copies_allowed

    kept = {"n": 7, "agreement": 1.0}

    def verdict(before: int, after: int, n: int = 12) -> object:
        copied = {"n": n, "before": before, "after": after}
        return decide(signals(preservation=kept, copies=copied), RULE)

    refused = verdict(0, 12)
    assert refused.status == RunStatus.rejected and refused.failed_signal == "copies"  # type: ignore[attr-defined]
    assert refused.reason.startswith("copies: the candidate answers 12 of 12")  # type: ignore[attr-defined]
    assert verdict(0, 2).failed_signal == "copies"  # type: ignore[attr-defined]
    assert verdict(0, 1).promote  # type: ignore[attr-defined]
    assert verdict(1, 2).promote  # type: ignore[attr-defined]  # the parent already copied one
    assert verdict(1, 3, n=64).promote and verdict(1, 4, n=64).failed_signal == "copies"  # type: ignore[attr-defined]
    assert [copies_allowed(0, n) for n in (1, 2, 3, 12, 64)] == [0, 0, 1, 1, 1]
    # The knob: an agent whose corrections are meant to be said everywhere turns it off.
    copied = {"n": 12, "before": 0, "after": 12}
    off = decide(signals(preservation=kept, copies=copied), {**RULE, "refuse_copies": False})
    assert off.promote
    assert copies_allowed(4, 12) > 4


def test_cli_shows_copies_and_what_was_copied() -> None:
    from app.cli.learning import signal_lines

    copied = {"prompt": "What is 13 times 5?", "parent": "65", "candidate": "60"}
    signal = {"n": 19, "near": 12, "before": 0, "after": 12, "allowed": 1, "copied": [copied]}
    assert signal_lines(Signals.model_validate({"copies": signal})) == [
        "copies       0 -> 12 of 19 other prompts answered with a correction's answer verbatim"
        " (12 near a correction; at most 1 allowed)",
        "  copied: 'What is 13 times 5?': 65 -> 60",
    ]


def _answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def test_on_prompts_the_environment_grades_only_a_right_answer_turned_wrong_counts() -> None:
    """Agreement keeps a changed answer the environment grades no worse (wrong to another
    wrong, or to right), counts a right one turned wrong and any ungraded change, and lists
    the changes that count first. The README flow's false refusal was two wrong answers
    turned into two other wrong ones (bench/results/continual.json, readme)."""
    from app.cycles.evaluation import agreement

    prompts = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(6)]
    pairs = [
        (_answer("a"), _answer("a")),  # kept
        (_answer("10"), _answer("12")),  # wrong -> wrong
        (_answer("7"), _answer("8")),  # wrong -> right
        (_answer("60"), _answer("61")),  # right -> wrong
        (_answer("x"), _answer("y")),  # ungraded
        (_answer("5"), _answer("5")),  # kept
    ]
    grades = [(True, True), (False, False), (False, True), (True, False), None, (False, False)]
    rate, changed, no_worse = agreement(prompts, pairs, grades)
    assert (rate, no_worse) == (4 / 6, 2)
    assert [(c["prompt"], c["kind"]) for c in changed] == [
        ("q3", "right->wrong"),
        ("q4", None),
        ("q1", "wrong->wrong"),
        ("q2", "wrong->right"),
    ]
    # Without an environment every change counts, as before.
    assert agreement(prompts, pairs)[0] == 2 / 6
    assert agreement(prompts, pairs)[2] == 0


def test_cli_says_how_many_prompts_the_environment_graded_and_how_each_change_was() -> None:
    from app.cli.learning import signal_lines

    changed = {
        "prompt": "Zoe buys 92 boxes",
        "parent": "120",
        "candidate": "122",
        "kind": "wrong->wrong",
    }
    signal = {
        "n": 13,
        "agreement": 1.0,
        "min": 0.95,
        "upper_bound": 1.0,
        "changed": [changed],
        "graded": 13,
        "no_worse": 1,
    }
    assert signal_lines(Signals.model_validate({"preservation": signal})) == [
        "preservation agreement 100.0% (min 95%), n=13, 13 graded by the environment"
        " (1 changed but no worse, counted as kept)",
        "  changed: 'Zoe buys 92 boxes': 120 -> 122 (wrong->wrong)",
    ]


def test_the_gate_grades_only_its_environments_tasks_asked_with_its_tools() -> None:
    """`grade_first_steps` grades a held-back prompt only where the environment poses it with
    its own tools and can grade both answers; prose, a prompt served without the
    tools, or a prompt whose grading fails stay ungraded (every change counts there), and
    never fail the cycle."""
    from app.training.client import grade_first_steps
    from trainer.envs import CalculatorEnvironment

    env = CalculatorEnvironment()
    task = env.tasks("train", 1, seed=3)[0]
    asked = {"messages": env.initial_messages(task), "tools": env.tools()}
    right = {
        "role": "assistant",
        "tool_calls": [
            {"function": {"name": "final_answer", "arguments": f'{{"answer": {task.answer}}}'}}
        ],
    }
    wrong = {
        "role": "assistant",
        "tool_calls": [{"function": {"name": "final_answer", "arguments": '{"answer": -1}'}}],
    }
    number = {"role": "assistant", "content": task.answer}
    prose = {"role": "assistant", "content": f"The answer is {task.answer}, I think."}
    prompts = [
        asked,
        asked,
        asked,
        {**asked, "tools": None},
        {"messages": None, "tools": env.tools()},
    ]
    pairs = [(right, wrong), (number, wrong), (prose, wrong), (right, wrong), (right, wrong)]
    assert grade_first_steps("calculator", prompts, pairs) == [
        (True, False),
        (True, False),
        None,
        None,
        None,
    ]
