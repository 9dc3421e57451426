"""The calculator environment: arithmetic word problems solved with a Calculator tool.

The model sees a word problem and two tools. It may call ``calculator`` (any number of
times) and must finish by calling ``final_answer``; the reward is 1.0 exactly when the
final answer equals the ground truth, else 0.0.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from trainer.envs.arithmetic_tasks import (
    TEMPLATES,
    ArithmeticProblem,
    problem_from_question,
    sample_problems,
)
from trainer.envs.base import Environment, Split, Task
from trainer.envs.safe_math import CalculatorError, calculate, evaluate

SYSTEM_PROMPT = "Solve the problem. Use the calculator for arithmetic, then call final_answer."

CALCULATOR_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression with numbers, + - * / ** and ( ).",
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "For example 12*(3+4)."}
            },
            "required": ["expression"],
        },
    },
}

FINAL_ANSWER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "final_answer",
        "description": "Give the final numeric answer. This ends the task.",
        "parameters": {
            "type": "object",
            "properties": {"answer": {"type": "number", "description": "The answer."}},
            "required": ["answer"],
        },
    },
}


def problem_to_task(problem: ArithmeticProblem) -> Task:
    """Wrap a generated problem as an environment :class:`Task`."""
    return Task(
        id=problem.problem_id,
        prompt=problem.question,
        answer=str(problem.answer),
        template=problem.template,
        difficulty=problem.difficulty,
        info={"numbers": list(problem.numbers), "expression": problem.expression},
    )


def parse_answer(value: Any) -> Fraction | None:
    """Read a final answer (number or text such as ``"1,234"`` or ``"$5."``); None if not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(repr(value)) if value == value and abs(value) != float("inf") else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number.adjusted()) > 30:
        return None  # also keeps "1e99999999" from building a huge integer
    return Fraction(number)


class CalculatorEnvironment(Environment):
    """GSM8K-style arithmetic word problems where the model should use a calculator."""

    name = "calculator"
    system_prompt = SYSTEM_PROMPT

    def __init__(self, templates: tuple[str, ...] | None = None) -> None:
        """Use all nine templates, or only ``templates`` (names from ``TEMPLATES``)."""
        unknown = set(templates or ()) - set(TEMPLATES)
        if unknown:
            raise ValueError(f"unknown templates: {sorted(unknown)}")
        self.templates = templates

    def tasks(self, split: Split, n: int, seed: int = 0) -> list[Task]:
        """``n`` distinct problems of ``split`` (the held-out split is fixed by hashing)."""
        return [problem_to_task(p) for p in sample_problems(split, n, seed, self.templates)]

    def tools(self) -> list[dict[str, Any]]:
        """The Calculator and Final Answer tools in OpenAI format."""
        return [CALCULATOR_TOOL, FINAL_ANSWER_TOOL]

    def execute_tool(self, name: str, args: Mapping[str, Any]) -> str:
        """Run the calculator (or acknowledge a final answer); errors come back as text."""
        if name == "calculator":
            if not isinstance(args, Mapping) or "expression" not in args:
                return "Error: calculator needs an 'expression' argument"
            return calculate(args["expression"])
        if name == self.final_answer_tool:
            return "Answer recorded."
        return f"Error: unknown tool {name!r}; use calculator or final_answer"

    def reward(self, task: Task, final_answer: Any) -> float:
        """1.0 when the final answer equals the ground truth numerically, else 0.0."""
        given = parse_answer(final_answer)
        return 1.0 if given is not None and given == Fraction(task.answer) else 0.0

    def task_of(self, messages: Sequence[Mapping[str, Any]]) -> Task | None:
        """The problem a conversation poses, when it is this environment's system prompt (or
        none) and one user message that is one of these templates' questions."""
        if not all(isinstance(m, Mapping) for m in messages):
            return None
        roles = [m.get("role") for m in messages]
        if roles == ["system", "user"]:
            if messages[0].get("content") != self.system_prompt:
                return None
        elif roles != ["user"]:
            return None
        content = messages[-1].get("content")
        problem = problem_from_question(content) if isinstance(content, str) else None
        if problem is None or (self.templates and problem.template not in self.templates):
            return None
        return problem_to_task(problem)

    def grade_tool_step(self, task: Task, name: str, args: Mapping[str, Any]) -> bool | None:
        """A calculator call is right when it computes the answer or a step on the way to it
        (``3*4`` for ``3*4+5``), wrong when it computes anything else or fails."""
        expression = args.get("expression")
        if not isinstance(expression, str):
            return False
        result = parse_answer(calculate(expression))
        return result is not None and result in _steps(task)

    def grade_text(self, task: Task, text: str) -> bool | None:
        """A text answer that is one number (``"67"``, ``"$1,234."``) is right when it is the
        answer; prose is not graded."""
        if parse_answer(text) is None:
            return None
        return self.reward(task, text) >= 1.0


def _steps(task: Task) -> set[Fraction]:
    """The answer and every intermediate value of the task's expression (each operation's
    result), exactly."""
    expression = (task.info or {}).get("expression")
    values = {Fraction(task.answer)}
    if isinstance(expression, str):
        for node in ast.walk(ast.parse(expression, mode="eval")):
            if isinstance(node, ast.BinOp):
                with contextlib.suppress(CalculatorError):
                    values.add(evaluate(ast.unparse(node)))
    return values
