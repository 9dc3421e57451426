"""Fine-tuning files are read line by line in OpenAI's three formats; graders and batches."""

from __future__ import annotations

import json

import pytest

from app.adapters.signals import ScoreSignal, Signals
from app.core.errors import InvalidRequest
from app.cycles import gate
from app.cycles.schemas import PromotionRule
from app.datasets.service import read_file
from app.fine_tuning.graders import grade, render
from trainer.objective import step_examples

USER = {"role": "user", "content": "What is 12 times 5?"}
ANSWER = {"role": "assistant", "content": "60"}


def jsonl(*lines: object) -> bytes:
    return "\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines).encode()


def test_each_format_is_recognised_and_kept() -> None:
    assert read_file(jsonl({"messages": [USER, ANSWER]}))[0] == "chat"
    pref = {
        "input": {"messages": [USER]},
        "preferred_output": [ANSWER],
        "non_preferred_output": [{"role": "assistant", "content": "61"}],
    }
    fmt, rows = read_file(jsonl(pref, pref))
    assert fmt == "preference" and len(rows) == 2
    assert rows[0]["chosen"]["content"] == "60" and rows[0]["rejected"]["content"] == "61"
    fmt, rows = read_file(jsonl({"messages": [USER], "reference_answer": "60", "answer": 60}))
    assert fmt == "reinforcement"
    assert rows[0]["item"] == {"reference_answer": "60", "answer": 60}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (jsonl({"messages": [USER, ANSWER]}, "{oops"), "line 2: not JSON"),
        (
            jsonl({"messages": [USER, ANSWER]}, {"messages": [{"role": "wizard", "content": "x"}]}),
            "line 2: messages.0",
        ),
        (
            jsonl({"messages": [USER, ANSWER]}, {"messages": [USER], "answer": 1}),
            "line 2: a reinforcement line in a file of chat lines (line 1 set the format)",
        ),
        (
            jsonl(
                {
                    "input": {"messages": [USER]},
                    "preferred_output": [USER],
                    "non_preferred_output": [ANSWER],
                }
            ),
            "line 1: preferred_output.0.role",
        ),
        (jsonl({"messages": [USER, ANSWER], "weights": 1}), "line 1: weights"),
        (jsonl({"messages": [USER, {**ANSWER, "weight": 0}]}), "line 1: messages.1.weight"),
        (b"\n\n", "the file holds no examples"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_bad_file_names_its_line_and_field(content: bytes, expected: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        read_file(content)
    assert expected in info.value.message


def test_graders_score_the_sampled_text_against_the_item() -> None:
    item = {"reference_answer": "60", "meta": {"unit": "dollars"}}
    assert render("{{item.meta.unit}}/{{ sample.output_text }}", item, "x") == "dollars/x"
    check = {
        "type": "string_check",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference_answer}}",
    }
    assert grade({**check, "operation": "eq"}, item, "60") == 1.0
    assert grade({**check, "operation": "eq"}, item, "60 dollars") == 0.0
    assert grade({**check, "operation": "ne"}, item, "61") == 1.0
    assert grade({**check, "operation": "like"}, item, "it is 60 dollars") == 1.0
    assert grade({**check, "operation": "ilike"}, {"reference_answer": "Sixty"}, "SIXTY") == 1.0
    fuzzy = {**check, "type": "text_similarity", "evaluation_metric": "fuzzy_match"}
    assert grade(fuzzy, item, "60") == 1.0
    assert 0.0 < grade(fuzzy, item, "600") < 1.0
    assert grade(fuzzy, item, "xyz") == 0.0


def test_batches_go_by_in_seeded_epochs() -> None:
    rows = [{"i": i} for i in range(10)]
    examples = {"sft": rows, "kl": rows[:3]}

    def epoch(seed: int, first_step: int) -> list[int]:
        return [
            r["i"]
            for step in range(first_step, first_step + 3)  # ceil(10 / 4) = 3 steps an epoch
            for r in step_examples(examples, 4, seed, step)["sft"]
        ]

    assert sorted(epoch(1, 1)) == list(range(10))  # every row once per epoch
    assert sorted(epoch(1, 4)) == list(range(10))
    assert epoch(1, 1) != epoch(1, 4)  # each epoch in its own order
    assert epoch(1, 1) == epoch(1, 1)  # the same seed, the same batches (a resumed job)
    assert epoch(1, 1) != epoch(2, 1)  # the seed changes them
    assert len(step_examples(examples, 4, 1, 1)["sft"]) == 4
    assert step_examples(examples, 4, 1, 1)["kl"] == rows[:3]  # what to keep: all, always
    assert step_examples(examples, None, 1, 5)["sft"] == rows


def test_the_validation_file_is_a_signal_the_gate_reads() -> None:
    rule = PromotionRule(max_regression=0.01, min_examples=5)
    worse = Signals(validation=ScoreSignal(n=6, before=0.5, after=0.33))
    verdict = gate.decide(worse, rule)
    assert verdict.status == "rejected" and verdict.failed_signal == "validation"
    better = Signals(validation=ScoreSignal(n=6, before=0.5, after=0.83))
    assert gate.decide(better, rule).status == "succeeded"
    too_few = Signals(validation=ScoreSignal(n=4, before=0.5, after=0.83))
    assert gate.decide(too_few, rule).status == "needs_evaluation"


def test_a_line_separator_inside_a_string_and_a_byte_order_mark_are_fine() -> None:
    line = json.dumps(
        {"messages": [USER, {**ANSWER, "content": "60\u2028sixty"}]}, ensure_ascii=False
    )
    fmt, rows = read_file(b"\xef\xbb\xbf" + line.encode() + b"\n" + line.encode())
    assert fmt == "chat" and len(rows) == 2
    assert rows[0]["messages"][-1]["content"] == "60\u2028sixty"


def test_a_line_nested_too_deeply_is_refused_by_line() -> None:
    with pytest.raises(InvalidRequest, match="line 1: nested too deeply"):
        read_file(b"[" * 100_000 + b"]" * 100_000)


def test_auto_batches_keep_big_files_within_the_step_limit() -> None:
    from app.fine_tuning.protocol import Method
    from app.fine_tuning.service import MAX_STEPS, _resolved

    small = _resolved(Method(type="supervised"), 20, seed=1)["supervised"]["hyperparameters"]
    assert small == {"n_epochs": 10, "batch_size": 8, "learning_rate_multiplier": 1.0}
    big = _resolved(Method(type="supervised"), 40_000, seed=1)["supervised"]["hyperparameters"]
    assert big["n_epochs"] == 3 and 3 * -(-40_000 // big["batch_size"]) <= MAX_STEPS
