"""Arithmetic word problems for the calculator environment (GSM8K reframed as tool use).

Nine templates: four with one operation, three with two, two with three. Each problem
keeps its numbers, the calculator expression that solves it and the integer answer.
The held-out split is fixed by hashing (template, numbers), so a problem is in the
``test`` split on every machine and for every seed, and training never sees it.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from trainer.envs.safe_math import CalculatorError, evaluate

Split = Literal["train", "test"]

NAMES = ("Tom", "Ana", "Sam", "Mia", "Leo", "Eva", "Max", "Zoe")
ITEMS = ("apples", "books", "coins", "cards", "eggs", "pens", "shells", "stamps")

#: Every number in a question has at most three digits (answers may be longer).
MAX_NUMBER = 999

#: One problem in ten (by hash of template and numbers) belongs to the held-out split.
HELD_OUT_MODULUS = 10


@dataclass(frozen=True)
class ArithmeticProblem:
    """One generated word problem with everything needed to solve and grade it."""

    template: str
    difficulty: int  # number of arithmetic operations: 1, 2 or 3
    numbers: tuple[int, ...]
    question: str
    expression: str  # the calculator expression that solves it, numbers in question order
    answer: int

    @property
    def split(self) -> Split:
        """The split this problem belongs to, fixed by its template and numbers."""
        return split_of(self.template, self.numbers)

    @property
    def problem_id(self) -> str:
        """A stable id: template plus a digest of the numbers."""
        return f"calc-{self.template}-{_digest(self.template, self.numbers)[:12]}"


def _digest(template: str, numbers: tuple[int, ...]) -> str:
    key = f"{template}:{','.join(str(n) for n in numbers)}"
    return hashlib.sha256(key.encode()).hexdigest()


def split_of(template: str, numbers: tuple[int, ...]) -> Split:
    """Which split a (template, numbers) pair belongs to; independent of any seed."""
    held_out = int(_digest(template, numbers)[:8], 16) % HELD_OUT_MODULUS == 0
    return "test" if held_out else "train"


def _num(rng: random.Random, max_digits: int = 3, low: int = 2) -> int:
    """A number whose digit count is uniform in 1..max_digits (so sizes vary widely)."""
    digits = rng.randint(1, max_digits)
    lo = max(low, 10 ** (digits - 1))
    return rng.randint(lo, 10**digits - 1)


Maker = Callable[[random.Random], tuple[tuple[int, ...], str, int, Callable[[str, str], str]]]


def _add(rng: random.Random) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    a, b = _num(rng), _num(rng)
    return (
        (a, b),
        f"{a}+{b}",
        a + b,
        lambda n, i: f"{n} has {a} {i} and gets {b} more. How many {i} does {n} have now?",
    )


def _sub(rng: random.Random) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    a, b = sorted((_num(rng), _num(rng)), reverse=True)
    if a == b:
        a += 1
    return (
        (a, b),
        f"{a}-{b}",
        a - b,
        lambda n, i: f"{n} had {a} {i} and gave away {b}. How many {i} are left?",
    )


def _mul(rng: random.Random) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    a, b = _num(rng), _num(rng, 2)
    return (
        (a, b),
        f"{a}*{b}",
        a * b,
        lambda n, i: f"{n} buys {a} boxes with {b} {i} in each box. How many {i} is that?",
    )


def _div(rng: random.Random) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    b = _num(rng, 2)
    q = min(_num(rng, 2), MAX_NUMBER // b)
    a = b * q
    return (
        (a, b),
        f"{a}/{b}",
        q,
        lambda n, i: (
            f"{n} shares {a} {i} equally among {b} friends. How many {i} does each friend get?"
        ),
    )


def _add_sub(rng: random.Random) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    a, b = _num(rng), _num(rng)
    c = rng.randint(1, min(a + b - 1, MAX_NUMBER))
    return (
        (a, b, c),
        f"{a}+{b}-{c}",
        a + b - c,
        lambda n, i: (
            f"{n} has {a} {i}, finds {b} more and then loses {c}. How many {i} does {n} have now?"
        ),
    )


def _mul_add(rng: random.Random) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    a, b, c = _num(rng, 2), _num(rng, 2), _num(rng)
    return (
        (a, b, c),
        f"{a}*{b}+{c}",
        a * b + c,
        lambda n, i: (
            f"{n} buys {a} packs of {b} {i} and already had {c}. How many {i} does {n} have now?"
        ),
    )


def _mul_sub(rng: random.Random) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    a, b = _num(rng, 2), _num(rng, 2)
    c = rng.randint(1, min(a * b - 1, MAX_NUMBER))
    return (
        (a, b, c),
        f"{a}*{b}-{c}",
        a * b - c,
        lambda n, i: (
            f"{n} earns {a} dollars a day for {b} days and spends {c} dollars. How "
            "many dollars are left?"
        ),
    )


def _two_products(
    rng: random.Random,
) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    a, b, c, d = _num(rng, 2), _num(rng, 2), _num(rng, 2), _num(rng, 2)
    return (
        (a, b, c, d),
        f"{a}*{b}+{c}*{d}",
        a * b + c * d,
        lambda n, i: (
            f"{n} buys {a} boxes of {b} {i} and {c} bags of {d} {i}. How many {i} does {n} buy?"
        ),
    )


def _daily(rng: random.Random) -> tuple[tuple[int, ...], str, int, Callable[[str, str], str]]:
    a, b, c = _num(rng), _num(rng, 2), _num(rng, 2)
    d = rng.randint(1, min(a + b * c - 1, MAX_NUMBER))
    return (
        (a, b, c, d),
        f"{a}+{b}*{c}-{d}",
        a + b * c - d,
        lambda n, i: (
            f"{n} has {a} {i}, gets {b} more each day for {c} days and then gives "
            f"away {d}. How many {i} does {n} have now?"
        ),
    )


#: template name -> (number of operations, maker)
TEMPLATES: dict[str, tuple[int, Maker]] = {
    "add": (1, _add),
    "sub": (1, _sub),
    "mul": (1, _mul),
    "div": (1, _div),
    "add_sub": (2, _add_sub),
    "mul_add": (2, _mul_add),
    "mul_sub": (2, _mul_sub),
    "two_products": (3, _two_products),
    "daily": (3, _daily),
}


def make_problem(rng: random.Random, template: str | None = None) -> ArithmeticProblem:
    """Draw one problem (of a given or uniformly chosen template) from ``rng``."""
    name = template or rng.choice(sorted(TEMPLATES))
    difficulty, maker = TEMPLATES[name]
    numbers, expression, answer, phrase = maker(rng)
    question = phrase(rng.choice(NAMES), rng.choice(ITEMS))
    return ArithmeticProblem(name, difficulty, numbers, question, expression, answer)


def sample_problems(
    split: Split, n: int, seed: int, templates: tuple[str, ...] | None = None
) -> list[ArithmeticProblem]:
    """``n`` distinct problems of one split, deterministic in ``seed``."""
    rng = random.Random(f"arithmetic:{split}:{seed}")
    chosen = sorted(templates or TEMPLATES)
    seen: set[str] = set()
    out: list[ArithmeticProblem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 1000 * (n + 10):
            raise RuntimeError(f"could not draw {n} distinct {split} problems")
        problem = make_problem(rng, rng.choice(chosen))
        if problem.split != split or problem.problem_id in seen:
            continue
        seen.add(problem.problem_id)
        out.append(problem)
    return out


# ---- reading a problem back from its question ------------------------------------------------
_DIGITS = re.compile(r"[0-9]+")
_NAME = re.compile(rf"\b({'|'.join(NAMES)})\b")
_ITEM = re.compile(rf"\b({'|'.join(ITEMS)})\b")
#: Longer numbers than any template draws are not its questions (and stay cheap to read).
_MAX_DIGITS = 6


def _skeleton(question: str) -> str:
    """A question with its numbers, name and item blanked: one per template."""
    return _DIGITS.sub("#", _ITEM.sub("_i", _NAME.sub("_n", question)))


def _skeletons() -> dict[str, tuple[str, str]]:
    """Each template's question skeleton -> (template, expression skeleton). Built from one
    drawn problem per template; every template puts its numbers into the expression in the
    question's order (checked here, and over many problems in the tests)."""
    rng = random.Random("skeletons")
    out: dict[str, tuple[str, str]] = {}
    for template in TEMPLATES:
        problem = make_problem(rng, template)
        in_question = [int(n) for n in _DIGITS.findall(problem.question)]
        in_expression = [int(n) for n in _DIGITS.findall(problem.expression)]
        assert in_question == in_expression == list(problem.numbers), template
        out[_skeleton(problem.question)] = (template, _DIGITS.sub("#", problem.expression))
    assert len(out) == len(TEMPLATES), "two templates read alike"
    return out


_SKELETONS = _skeletons()


def problem_from_question(question: str) -> ArithmeticProblem | None:
    """The problem a question poses, when it is one of these templates' questions exactly
    (one name and one item throughout, numbers free) with a whole answer; None for any other
    text."""
    question = question.strip()
    found = _SKELETONS.get(_skeleton(question))
    if found is None:
        return None
    template, expression = found
    digits = _DIGITS.findall(question)
    if (
        len(set(_NAME.findall(question))) != 1
        or len(set(_ITEM.findall(question))) > 1
        or len(digits) != expression.count("#")  # a "#" of the question's own
        or any(len(d) > _MAX_DIGITS for d in digits)
    ):
        return None
    numbers = tuple(int(d) for d in digits)
    filled = iter(str(n) for n in numbers)
    expression = re.sub("#", lambda _: next(filled), expression)
    try:
        answer = evaluate(expression)
    except CalculatorError:  # "among 0 friends"
        return None
    if answer.denominator != 1:
        return None
    return ArithmeticProblem(
        template, TEMPLATES[template][0], numbers, question, expression, int(answer)
    )
