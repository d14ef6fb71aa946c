"""The solver contract: what every least-squares solver in lsqlab takes and returns.

A solver computes

    x* = LstSq(A, b, damp) = argmin_x ||A x - b||^2 + damp^2 ||x||^2,

the minimum-norm minimiser when damp = 0 and the minimiser is not unique. :class:`Solver` states the
signature; :class:`SolverOptions` holds the stopping rules every solver reads (one record for
``lstsq``, the null-space method and the applications); :class:`LstSqInfo` is what a solve reports,
its ``istop`` an index into :data:`STOP_REASONS` (SciPy's ``lsmr`` codes 0-7, plus ours 8-10).
The differentiation rules (:mod:`lsqlab.gradients`) are written once against this contract, so a
solver that keeps it gets exact derivatives; ``tests/test_solver_contract.py`` checks every solver
of the package against it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from lsqlab.operators import LinearMap

STOP_REASONS: tuple[str, ...] = (
    "x = 0 is a solution (b = 0 or A^T b = 0)",  # 0
    "||r|| small: Ax - b small enough for atol, btol",  # 1
    "||A^T r|| small: least-squares solution within atol",  # 2
    "cond(A) exceeds conlim",  # 3
    "||r|| small at machine precision",  # 4
    "||A^T r|| small at machine precision",  # 5
    "cond(A) too large for machine precision",  # 6
    "iteration limit reached before convergence",  # 7
    "non-finite value (NaN/Inf) in b or in the operator's output",  # 8
    "stop test met by the recurrences but not by the true residual: x is not trusted",  # 9
    "A is not linear: A(0) != 0 (an offset A v + c)",  # 10
)
CONVERGED_CODES: tuple[int, ...] = (0, 1, 2, 4, 5)
NOT_TRUSTED, NOT_LINEAR = 9, 10


@dataclass(frozen=True)
class SolverOptions:
    """Stopping rules of one solve, SciPy's ``lsmr`` meaning and defaults; ``maxiter=None`` is min(m, n).

    A solver stops when ||r|| <= btol ||b|| + atol ||A|| ||x|| (a consistent system), when
    ||A^T r - damp^2 x|| <= atol ||[A; damp I]|| ||r|| (least squares), when its cond(A) estimate
    exceeds conlim, or after maxiter iterations (istop 7: not converged).

    atol, btol: finite, >= 0. conlim: >= 0; 0 or inf means no limit (as in SciPy). maxiter: None or
    an integer in [0, 2**31 - 2] (iteration counts are int32). NumPy scalars become Python numbers.
    A traced atol/btol is accepted for the solvers and traces called directly (they use it as an
    array) but refused where the options are static, hashed configuration (``lstsq``).
    """

    atol: float = 1e-6
    btol: float = 1e-6
    conlim: float = 1e8
    maxiter: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "atol", _tolerance("atol", self.atol))
        object.__setattr__(self, "btol", _tolerance("btol", self.btol))
        object.__setattr__(self, "conlim", _condition_limit(self.conlim))
        object.__setattr__(self, "maxiter", _iteration_cap(self.maxiter))

    def __hash__(self) -> int:
        self.check_static()
        return hash((self.atol, self.btol, self.conlim, self.maxiter))

    def check_static(self) -> None:
        """Raise TypeError if atol or btol is traced (a compiled solve is keyed on the options)."""
        for name in ("atol", "btol"):
            if isinstance(getattr(self, name), jax.core.Tracer):
                raise TypeError(f"{name} is traced: {_STATIC_TOLERANCES}")

    def iteration_limit(self, m: int, n: int) -> int:
        return min(m, n) if self.maxiter is None else self.maxiter


_STATIC_TOLERANCES = "tolerances are static Python floats and cannot be traced (pass a float, not a jit/vmap argument)"
MAX_ITERATIONS = 2**31 - 2  # the largest maxiter: iteration counts are int32


def _real(name: str, value: Any) -> float:
    """A Python or NumPy real number (not bool, not an array, not traced) as a Python float."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} is traced: {_STATIC_TOLERANCES}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a Python float, got {type(value).__name__} {value!r}")
    return float(value)


def _tolerance(name: str, value: Any) -> Any:
    """atol/btol: a finite float >= 0 (a tracer passes through, see ``SolverOptions.check_static``)."""
    if isinstance(value, jax.core.Tracer):
        return value
    value = _real(name, value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


def _condition_limit(value: Any) -> float:
    """conlim: a float >= 0 (0 and inf: no limit)."""
    value = _real("conlim", value)
    if not value >= 0:
        raise ValueError(f"conlim must be >= 0 (0 or inf: no limit), got {value}")
    return value


def _iteration_cap(value: Any) -> int | None:
    """maxiter: None or a Python int in [0, MAX_ITERATIONS]."""
    if value is None:
        return None
    if isinstance(value, jax.core.Tracer):
        raise TypeError("maxiter is traced: the iteration limit is a static Python int and cannot be traced")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"maxiter must be None or an integer, got {type(value).__name__} {value!r}")
    if not 0 <= value <= MAX_ITERATIONS:
        raise ValueError(f"maxiter must be None or an integer in [0, {MAX_ITERATIONS}] (int32 counts), got {value}")
    return int(value)


class LstSqInfo(NamedTuple):
    """What a solve reports. Arrays, so that it can leave ``jit`` and ``vmap``."""

    iterations: jax.Array  # number of iterations run
    istop: jax.Array  # stop reason, index into STOP_REASONS (SciPy's codes, plus 8)
    normr: jax.Array  # ||b - A x|| (for damp > 0: of the stacked residual [b - Ax; -damp x])
    normar: jax.Array  # ||A^T r - damp^2 x||
    norma: jax.Array  # Frobenius-norm estimate of [A; damp I]
    conda: jax.Array  # condition-number estimate of [A; damp I]
    normx: jax.Array  # ||x||

    @property
    def reason(self) -> str:
        """Readable stop reason (needs a concrete, unbatched ``istop``)."""
        return STOP_REASONS[int(self.istop)]

    @property
    def converged(self) -> jax.Array:
        return jnp.isin(self.istop, jnp.asarray(CONVERGED_CODES))


class Solver(Protocol):
    """``solver(op, b, damp, x0, options) -> (x, info)``: returns x = LstSq(A, b, damp).

    - ``op``: the :class:`~lsqlab.operators.LinearMap` A (m x n; ``op.mv``, ``op.rmv``), which may be
      tall, wide or square and of any rank; ``b``: a 1-D array of length m; ``damp``: a scalar >= 0,
      possibly traced (branch on it at run time, never in Python).
    - x = argmin ||A x - b||^2 + damp^2 ||x||^2, and for damp = 0 the minimum-norm one among the
      minimisers (a rank-deficient or wide A): x must lie in row(A). A solver that returns another
      least-squares solution (x + a null-space vector) breaks the derivative rules.
    - float32 and float64: computed in b's dtype, to the accuracy ``options`` ask for.
    - ``x0``: a warm start (None: from zero). It changes the path, never the answer: a Krylov solver
      solves for the correction ``LstSq(A, b - A x0, ...)`` and must still return the minimum-norm x
      (for damp = 0 that needs x0 in row(A); the derivative rules pass x0 = None).
    - ``options``: a :class:`SolverOptions`; ``info``: an :class:`LstSqInfo` of scalar arrays whose
      ``istop`` is in :data:`CONVERGED_CODES` only when x meets the stop test, 7 at the iteration
      limit, 8 when a non-finite value was met.
    - Hashable and comparable: it is a static argument of ``jax.jit`` (a module-level function, or a
      frozen dataclass holding hashable configuration).
    """

    def __call__(self, op: LinearMap, b: jax.Array, damp: jax.Array | float, x0: Any,
                 options: SolverOptions) -> tuple[Any, LstSqInfo]: ...
