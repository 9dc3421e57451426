"""The calculator environment: tasks, the safe Calculator tool, reward and episode rules."""

from __future__ import annotations

import time
from typing import Any

import pytest

from trainer.envs import CalculatorEnvironment, UnknownEnvironmentError, get_environment
from trainer.envs.arithmetic_tasks import (
    TEMPLATES,
    problem_from_question,
    sample_problems,
    split_of,
)
from trainer.envs.base import AssistantTurn
from trainer.envs.calculator import problem_to_task
from trainer.envs.runner import EpisodeState, ToolCallText
from trainer.envs.safe_math import calculate

ENV = CalculatorEnvironment()

HOSTILE = [
    "2**99999999",
    "9**9**9**9",
    "10**31",
    "(10**15)*(10**15)*10",
    "1e999",
    "__import__('os').system('true')",
    "open('/etc/passwd').read()",
    "x + 1",
    "().__class__.__bases__[0].__subclasses__()",
    "(1).real",
    "'a' * 10",
    "[1, 2, 3]",
    "lambda: 1",
    "1 if 1 else 2",
    "2 ^ 3",
    "1,000 + 5",
    "1 / 0",
    "5 % 0",
    "0 ** -1",
    "2 ** 0.5",
    "9" * 10_000,
    "(" * 500 + "1" + ")" * 500,
    "1+" * 60 + "1",
    "",
    "   ",
    "1 +",
    "True + 1",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_calculator_refuses_hostile_input_with_an_error_message(expression: str) -> None:
    started = time.monotonic()
    result = ENV.execute_tool("calculator", {"expression": expression})
    assert result.startswith("Error: ") and len(result) > len("Error: ") + 5
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("value", [None, 12, 3.5, ["1+1"], {"a": 1}])
def test_calculator_refuses_non_string_expressions(value: object) -> None:
    assert ENV.execute_tool("calculator", {"expression": value}).startswith("Error: ")


def test_calculator_tool_errors_on_missing_argument_or_unknown_tool() -> None:
    assert ENV.execute_tool("calculator", {}).startswith("Error: ")
    assert ENV.execute_tool("calculator", {"expr": "1+1"}).startswith("Error: ")
    assert ENV.execute_tool("python", {"code": "1"}).startswith("Error: ")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("12+35", "47"),
        ("15*75-996", "129"),
        ("7/2", "3.5"),
        ("1/3", "0.333333"),
        ("2**10", "1024"),
        ("-(3-5)*2", "4"),
        ("10//3", "3"),
        ("10 % 4", "2"),
        ("0.1+0.2", "0.3"),
        (" 6 * ( 2 + 5 ) ", "42"),
        ("2**-2", "0.25"),
        ("12*34+56*78", "4776"),
    ],
)
def test_calculator_evaluates_arithmetic_exactly(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize("answer", ["47", 47, 47.0, "47.0", " 47 ", "47.", "$47"])
def test_reward_is_one_for_the_right_answer_in_any_numeric_form(answer: object) -> None:
    task = ENV.tasks("test", 1, seed=0)[0]
    task = type(task)(task.id, task.prompt, "47", task.template, task.difficulty)
    assert ENV.reward(task, answer) == 1.0


@pytest.mark.parametrize(
    "answer", [46, "48", "47a", "forty-seven", None, True, "", "nan", "inf", "1e99999999", [47]]
)
def test_reward_is_zero_for_anything_else(answer: object) -> None:
    task = ENV.tasks("test", 1, seed=0)[0]
    task = type(task)(task.id, task.prompt, "47", task.template, task.difficulty)
    assert ENV.reward(task, answer) == 0.0


def test_reward_accepts_thousands_separators() -> None:
    task = ENV.tasks("test", 1, seed=0)[0]
    task = type(task)(task.id, task.prompt, "1047", task.template, task.difficulty)
    assert ENV.reward(task, "1,047") == 1.0


def test_tasks_are_deterministic_distinct_and_correct() -> None:
    first = ENV.tasks("train", 300, seed=3)
    assert [t.id for t in first] == [t.id for t in ENV.tasks("train", 300, seed=3)]
    assert [t.id for t in first] != [t.id for t in ENV.tasks("train", 300, seed=4)]
    assert len({t.id for t in first}) == 300
    for task in first:
        assert calculate(task.info["expression"]) == task.answer
        assert int(task.answer) >= 0 and max(task.info["numbers"]) <= 999
        at = 0
        for number in task.info["numbers"]:  # numbers appear in the prompt in expression order
            at = task.prompt.index(str(number), at) + len(str(number))


def test_templates_cover_one_two_and_three_operations() -> None:
    tasks = ENV.tasks("train", 500, seed=0)
    assert {t.template for t in tasks} == set(TEMPLATES)
    assert {t.difficulty for t in tasks} == {1, 2, 3}
    assert sum(1 for d, _ in TEMPLATES.values() if d == 1) == 4


def test_held_out_split_is_fixed_and_disjoint_from_training() -> None:
    test_ids = {t.id for seed in range(3) for t in ENV.tasks("test", 200, seed=seed)}
    train_ids = {t.id for seed in range(3) for t in ENV.tasks("train", 2000, seed=seed)}
    assert not test_ids & train_ids
    for problem in sample_problems("test", 100, seed=7):
        assert split_of(problem.template, problem.numbers) == "test"
    share = len(sample_problems("test", 50, seed=1)) / 50
    assert share == 1.0


def test_registry_and_tool_schema() -> None:
    env = get_environment("calculator")
    assert isinstance(env, CalculatorEnvironment)
    assert env.tool_names() == {"calculator", "final_answer"}
    for tool in env.tools():
        assert tool["type"] == "function"
        assert tool["function"]["parameters"]["type"] == "object"
    with pytest.raises(UnknownEnvironmentError):
        get_environment("chess")


def _turn(finish: str = "tool_calls") -> AssistantTurn:
    return AssistantTurn(None, None, None, finish)


def _call(name: str, arguments: str, call_id: str = "c1") -> ToolCallText:
    return ToolCallText(call_id, name, arguments)


def _state(answer: str = "47", max_turns: int = 4) -> EpisodeState:
    task = ENV.tasks("test", 1, seed=0)[0]
    task = type(task)(task.id, task.prompt, answer, task.template, task.difficulty)
    return EpisodeState(ENV, task, max_turns)


def test_episode_calculator_then_right_final_answer_scores_one() -> None:
    state = _state("47")
    state.record(None, [_call("calculator", '{"expression": "12+35"}')], _turn())
    assert not state.done and state.messages[-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "47",
    }
    state.record(None, [_call("final_answer", '{"answer": 47}', "c2")], _turn())
    episode = state.episode()
    assert (episode.reward, episode.correct, episode.finish_reason) == (1.0, True, "final_answer")
    assert episode.used_calculator and episode.turns == 2


def test_episode_wrong_final_answer_scores_zero() -> None:
    state = _state("47")
    state.record(None, [_call("final_answer", '{"answer": 46}')], _turn())
    episode = state.episode()
    assert (episode.reward, episode.correct, episode.used_calculator) == (0.0, False, False)


@pytest.mark.parametrize(
    ("content", "calls", "finish"),
    [
        (None, [_call("final_answer", '{"answer": 4')], "malformed"),
        (None, [_call("final_answer", "[47]")], "malformed"),
        (None, [_call("final_answer", '{"value": 47}')], "malformed"),
        (None, [_call("search", '{"q": "47"}')], "malformed"),
        ('<tool_call>{"name": calculator}', [], "malformed"),
        ("The answer is 47.", [], "no_tool_call"),
    ],
)
def test_episode_malformed_or_missing_tool_calls_end_with_reward_zero(
    content: str | None, calls: list[ToolCallText], finish: str
) -> None:
    state = _state("47")
    state.record(content, calls, _turn("tool_calls" if calls else "stop"))
    episode = state.episode()
    assert (episode.finish_reason, episode.reward) == (finish, 0.0)


def test_episode_turn_limit_and_length() -> None:
    state = _state(max_turns=2)
    for _ in range(2):
        state.record(None, [_call("calculator", '{"expression": "1+"}')], _turn())
    assert state.messages[-1]["content"].startswith("Error: ")
    assert state.episode().finish_reason == "turn_limit"
    truncated = _state()
    truncated.record('<tool_call>{"name": "calcul', [], _turn("length"))
    assert truncated.episode().finish_reason == "length"


def test_a_question_reads_back_as_the_problem_it_poses() -> None:
    """Every template's question, in either split, reads back to its numbers, expression and
    answer (what lets the learning gate grade held-back traffic); any other text does not."""
    env = CalculatorEnvironment()
    for split in ("train", "test"):
        for problem in sample_problems(split, 200, seed=7):
            assert problem_from_question(problem.question) == problem
            conversation = env.initial_messages(problem_to_task(problem))
            task = env.task_of(conversation)
            assert task is not None and task.answer == str(problem.answer)
    other = [
        "What is 12 times 5?",
        "Tom has 3 apples and gets 4 more. How many apples does Tom have now? Explain.",
        "Tom shares 5 apples equally among 0 friends. How many apples does each friend get?",
        "Tom shares 7 apples equally among 2 friends. How many apples does each friend get?",
        "Tom has # apples and gets 5 more. How many apples does Tom have now?",
        "Tom has 3 apples and gets 4 more. How many apples does Ana have now?",
        "Tom has 3 apples and gets 4 more. How many pens does Tom have now?",
        f"Tom has {'9' * 5000} apples and gets 4 more. How many apples does Tom have now?",
        "Tom has \u0663 apples and gets 4 more. How many apples does Tom have now?",
    ]
    assert [problem_from_question(q) for q in other] == [None] * len(other)
    question = sample_problems("train", 1, seed=1)[0].question
    not_first_steps = [
        [{"role": "user", "content": question}, {"role": "assistant", "content": "1"}],
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": question}],
        [{"role": "user", "content": None}],
        ["not a message"],
    ]
    assert [env.task_of(m) for m in not_first_steps] == [None] * 4  # type: ignore[arg-type]
    assert env.task_of([{"role": "user", "content": question}]) is not None
    sub = [{"role": "user", "content": "Tom had 9 pens and gave away 4. How many pens are left?"}]
    assert CalculatorEnvironment(templates=("add",)).task_of(sub) is None  # not its template


def _step(name: str, arguments: object) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}
        ],
    }


def test_a_first_step_is_graded_as_the_episode_runner_would_play_it() -> None:
    """Right or wrong as the episode's first turn would go (`trainer.envs.runner`): a call the
    runner could not run is wrong, a final answer is graded by the reward (calls before it
    count for nothing), calculator calls are right when each computes a step of the answer;
    a number in text is read as the answer, prose is not graded."""
    env = CalculatorEnvironment()
    question = "Mia buys 12 packs of 5 pens and already had 7. How many pens does Mia have now?"
    task = env.task_of([{"role": "user", "content": question}])
    assert task is not None and task.answer == "67"

    def calls(*steps: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "tool_calls": [s["tool_calls"][0] for s in steps]}

    right = [
        _step("calculator", '{"expression": "12*5+7"}'),
        _step("calculator", '{"expression": "12*5"}'),  # a step on the way
        _step("calculator", {"expression": "5*12"}),  # arguments as an object
        _step("final_answer", '{"answer": 67}'),
        calls(
            _step("calculator", '{"expression": "12*5"}'),
            _step("calculator", '{"expression": "60+7"}'),
        ),
        calls(
            _step("calculator", '{"expression": "1+1"}'), _step("final_answer", '{"answer": "67"}')
        ),
        {"role": "assistant", "content": " $67. "},
    ]
    wrong = [
        _step("calculator", '{"expression": "12+5"}'),
        _step("calculator", '{"expression": "12/0"}'),
        _step("calculator", '{"expr": "12*5"}'),
        _step("final_answer", '{"answer": 61}'),
        _step("final_answer", '{"value": 67}'),  # the runner ends this one "malformed"
        _step("calculator", "not json"),
        _step("calculator", "[1, 2]"),
        _step("search", '{"q": "12*5"}'),  # a tool the environment does not offer
        {"role": "assistant", "tool_calls": [None]},
        calls(
            _step("calculator", '{"expression": "12*5"}'),
            _step("calculator", '{"expression": "2+2"}'),
        ),
        calls(_step("final_answer", '{"answer": 61}'), _step("final_answer", '{"answer": 67}')),
        {"role": "assistant", "content": "61"},
    ]
    wrong += [
        {"role": "assistant", "content": '<tool_call>{"name": calculator}'},  # unparsed call
        _step("calculator", ""),  # empty arguments are {}: no expression
    ]
    ungraded = [
        {"role": "assistant", "content": "Mia has sixty-seven pens."},  # prose
        {"role": "assistant", "content": None},
        "not a message",
    ]
    assert [env.grade_first_step(task, m) for m in right] == [True] * len(right)
    assert [env.grade_first_step(task, m) for m in wrong] == [False] * len(wrong)
    assert [env.grade_first_step(task, m) for m in ungraded] == [None] * len(ungraded)  # type: ignore[arg-type]


def test_a_graded_first_turn_that_ends_the_episode_is_graded_as_the_runner_scores_it() -> None:
    """Where the runner's first turn ends the episode (a final answer, a call it cannot run,
    text), the grade is the runner's reward; text is the one exception the environment reads
    as a user would: a number in text is graded by its value, prose not at all."""
    answer = "47"
    ends = [
        (None, [_call("final_answer", '{"answer": 47}')]),
        (None, [_call("final_answer", '{"answer": "47.0"}')]),
        (None, [_call("final_answer", '{"answer": 46}')]),
        (
            None,
            [
                _call("calculator", '{"expression": "40+7"}'),
                _call("final_answer", '{"answer": 47}'),
            ],
        ),
        (None, [_call("final_answer", '{"answer": 4')]),
        (None, [_call("final_answer", "[47]")]),
        (None, [_call("final_answer", '{"value": 47}')]),
        (None, [_call("search", '{"q": "47"}')]),
        ('<tool_call>{"name": calculator}', []),
    ]
    for content, calls in ends:
        state = _state(answer)
        state.record(content, calls, _turn("tool_calls" if calls else "stop"))
        assert state.done
        message = {
            "role": "assistant",
            "content": content,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ],
        }
        graded = ENV.grade_first_step(state.task, message)
        assert graded == (state.episode().reward >= 1.0), (content, calls)
    state = _state(answer)
    state.record("47", [], _turn("stop"))
    assert state.episode().finish_reason == "no_tool_call"  # no reward for text...
    text = {"role": "assistant", "content": "47"}
    assert ENV.grade_first_step(state.task, text) is True  # ...but a reader was answered
    assert ENV.grade_first_step(state.task, {"role": "assistant", "content": "It is 47."}) is None
