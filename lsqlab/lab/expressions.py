"""A whitelisted parser for the formulas students type: arithmetic in a few variables, with bounded work.

Accepted: numbers, the variables, ``pi``, unary ``+ -``, binary ``+ - * /``, ``**`` with a literal
exponent |n| <= ``MAX_EXPONENT`` and the one-argument functions in ``FUNCTIONS``; at most
``MAX_LENGTH`` characters and ``MAX_DEPTH`` levels of nesting. Every sub-expression without a variable
is folded to a float64 at parse time and must be finite (so ``1/0``, ``10**400``, ``log(0)`` are
rejected there, not at run time). Evaluation never calls Python's ``eval``: it walks the checked tree
with ``jax.numpy`` (constant folding: ``numpy``), so its cost is linear in the length of the formula.
Every rejection is a ``ValueError`` whose message names the problem.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np

MAX_LENGTH = 200  # characters
MAX_DEPTH = 30  # nesting levels of the syntax tree
MAX_EXPONENT = 16  # |n| in x**n
FUNCTIONS = ("sin", "cos", "tan", "exp", "log", "sqrt", "abs", "tanh")  # in both numpy and jax.numpy
CONSTANTS = {"pi": float(np.pi)}
_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a**b,
}
_SIGNS: dict[type, Callable[[Any], Any]] = {ast.USub: lambda a: -a, ast.UAdd: lambda a: +a}


@dataclass(frozen=True)
class Expression:
    """A checked formula in ``variables``; call it with one value per variable."""

    text: str
    variables: tuple[str, ...]
    tree: ast.expr

    def __call__(self, *values: Any) -> Any:
        """The formula at ``values`` (scalars, arrays or tracers, broadcast), with ``jax.numpy``."""
        if len(values) != len(self.variables):
            raise ValueError(f"{self.text!r} takes {len(self.variables)} values, got {len(values)}")
        return _evaluate(self.tree, dict(zip(self.variables, values)), jnp)


def parse(text: str, variables: tuple[str, ...]) -> Expression:
    """Check ``text`` against the whitelist above and return it as an :class:`Expression`."""
    if not isinstance(text, str):
        raise ValueError(f"the expression must be text, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ValueError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH} are accepted")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"cannot read {text!r}: {error.msg}") from None
    except (MemoryError, RecursionError):
        raise ValueError(f"{text!r} is nested too deeply") from None
    _check(tree, text, variables, 1)
    return Expression(text, tuple(variables), tree)


def _check(node: ast.AST, text: str, variables: tuple[str, ...], depth: int) -> bool:
    """Raise ValueError if ``node`` is outside the whitelist; return whether it is free of variables
    (then it is folded and must be finite)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the expression is nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        constant = True
    elif isinstance(node, ast.Name):
        if node.id not in (*variables, *CONSTANTS):
            hint = ", ".join((*variables, *CONSTANTS))
            kind = "function: call it, e.g. sin(x)" if node.id in FUNCTIONS else f"name: use {hint}"
            raise ValueError(f"{node.id!r} is not a known {kind}")
        constant = node.id in CONSTANTS
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _SIGNS:
        constant = _check(node.operand, text, variables, depth + 1)
    elif isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        if isinstance(node.op, ast.Pow):
            _check_exponent(node.right, text)
        left = _check(node.left, text, variables, depth + 1)
        right = _check(node.right, text, variables, depth + 1)
        constant = left and right
    elif isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise ValueError(f"only {', '.join(FUNCTIONS)} can be called, not {ast.unparse(node.func)}")
        if node.keywords or len(node.args) != 1:
            raise ValueError(f"{name} takes exactly one argument, e.g. {name}(x); got {_source(node, text)}")
        constant = _check(node.args[0], text, variables, depth + 1)
    else:
        what = type(node.op).__name__ if isinstance(node, (ast.BinOp, ast.UnaryOp)) else type(node).__name__
        raise ValueError(f"{what} is not allowed in an expression: use numbers, + - * / ** and functions")
    if constant:
        _require_finite(node, text)
    return constant


def _check_exponent(node: ast.expr, text: str) -> None:
    """The exponent of ** must be a literal number (possibly signed) with |n| <= MAX_EXPONENT."""
    inner = node.operand if isinstance(node, ast.UnaryOp) and type(node.op) in _SIGNS else node
    literal = isinstance(inner, ast.Constant) and isinstance(inner.value, (int, float)) \
        and not isinstance(inner.value, bool)
    if not literal or not abs(inner.value) <= MAX_EXPONENT:
        raise ValueError(f"the exponent in ** must be a number between -{MAX_EXPONENT} and {MAX_EXPONENT}, "
                         f"got {_source(node, text)}")


def _require_finite(node: ast.expr, text: str) -> None:
    """Fold a variable-free sub-expression to a float64; ValueError unless it is finite."""
    with np.errstate(all="ignore"):
        try:
            value = float(_evaluate(node, {}, np))
        except OverflowError:
            value = np.inf
    if not np.isfinite(value):
        raise ValueError(f"{_source(node, text)} is not a finite number (it evaluates to {value})")


def _source(node: ast.expr, text: str) -> str:
    """The part of ``text`` that ``node`` was read from."""
    return ast.get_source_segment(text, node) or ast.unparse(node)


def _evaluate(node: ast.expr, names: Mapping[str, Any], numpy: ModuleType) -> Any:
    """The value of a checked tree. With NumPy every number is a float64 first (1/0 is inf, not an
    exception); with JAX a Python float (weakly typed: it takes the variables' dtype)."""
    number = np.float64 if numpy is np else float
    if isinstance(node, ast.Constant):
        return number(node.value)
    if isinstance(node, ast.Name):
        return names[node.id] if node.id in names else number(CONSTANTS[node.id])
    if isinstance(node, ast.UnaryOp):
        return _SIGNS[type(node.op)](_evaluate(node.operand, names, numpy))
    if isinstance(node, ast.BinOp):
        return _OPERATORS[type(node.op)](_evaluate(node.left, names, numpy), _evaluate(node.right, names, numpy))
    return getattr(numpy, node.func.id)(_evaluate(node.args[0], names, numpy))
