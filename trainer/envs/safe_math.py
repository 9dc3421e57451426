"""Safe evaluation of arithmetic expressions for the Calculator tool.

The model's expression is parsed with :mod:`ast` and walked by hand: only numbers,
``+ - * / // % **`` and parentheses are allowed, the input length, node count, exponents
and magnitudes are bounded, and arithmetic is exact (:class:`fractions.Fraction`).
Nothing is ever passed to ``eval``. Every failure is a :class:`CalculatorError` whose
message is meant to be shown to the model.
"""

from __future__ import annotations

import ast
import math
from fractions import Fraction

MAX_EXPRESSION_CHARS = 200
MAX_NODES = 100
MAX_EXPONENT = 64
#: Any literal, intermediate or result at or above this magnitude is refused.
MAX_MAGNITUDE = Fraction(10) ** 30


class CalculatorError(ValueError):
    """A bad expression; the message is returned to the model as the tool result."""


_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_UNARY = (ast.UAdd, ast.USub)


def evaluate(expression: object) -> Fraction:
    """Evaluate an arithmetic expression exactly, or raise :class:`CalculatorError`."""
    if not isinstance(expression, str):
        raise CalculatorError("expression must be a string such as '12*(3+4)'")
    text = expression.strip()
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression too long (more than {MAX_EXPRESSION_CHARS} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculatorError(f"could not parse expression {text!r}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"expression too complex (more than {MAX_NODES} parts)")
    try:
        return _eval(tree.body)
    except RecursionError:
        raise CalculatorError("expression nested too deeply") from None


def format_number(value: Fraction) -> str:
    """Render an exact result: integers as such, other values with up to 6 decimals."""
    if value.denominator == 1:
        return str(value.numerator)
    rounded = round(value, 6)
    text = f"{float(rounded):.6f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def calculate(expression: object) -> str:
    """Run the Calculator tool: the formatted result, or ``Error: ...`` text. Never raises."""
    try:
        return format_number(evaluate(expression))
    except CalculatorError as exc:
        return f"Error: {exc}"


def _check(value: Fraction) -> Fraction:
    if abs(value) >= MAX_MAGNITUDE:
        raise CalculatorError("number too large (limit is 10**30)")
    return value


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculatorError(f"only numbers are allowed, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise CalculatorError("number too large (limit is 10**30)")
        # repr() keeps the decimal the model wrote (0.1 stays 1/10, not a binary fraction)
        return _check(Fraction(repr(value)) if isinstance(value, float) else Fraction(value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY):
        operand = _eval(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, _BINARY):
        return _check(_binary(node.op, _eval(node.left), _eval(node.right)))
    if isinstance(node, ast.Name):
        raise CalculatorError(f"names are not allowed ({node.id!r}); use numbers and + - * / ( )")
    if isinstance(node, ast.BinOp):
        symbol = "^" if isinstance(node.op, ast.BitXor) else type(node.op).__name__
        hint = "; use ** for powers" if symbol == "^" else ""
        raise CalculatorError(f"operator {symbol} is not supported{hint}")
    raise CalculatorError(
        f"unsupported syntax ({type(node).__name__}); use numbers and + - * / ( )"
    )


def _binary(op: ast.operator, left: Fraction, right: Fraction) -> Fraction:
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        return left * right
    if isinstance(op, ast.Pow):
        return _power(left, right)
    if right == 0:
        raise CalculatorError("division by zero")
    if isinstance(op, ast.Div):
        return left / right
    if isinstance(op, ast.FloorDiv):
        return Fraction(left // right)
    return left % right


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise CalculatorError("only whole-number exponents are supported")
    power = exponent.numerator
    if abs(power) > MAX_EXPONENT:
        raise CalculatorError(f"exponent too large (limit is {MAX_EXPONENT})")
    if base == 0 and power < 0:
        raise CalculatorError("division by zero")
    # Bound the size before computing: |base|**power must stay under the magnitude limit.
    if base != 0 and abs(power) * abs(math.log10(abs(base))) > 31:
        raise CalculatorError("number too large (limit is 10**30)")
    return base**power
