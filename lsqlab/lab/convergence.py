"""LSMR beside CG on the normal equations (CGLS) on a problem of chosen shape and condition number.

The test matrix is A = U diag(s) V^T with orthonormal random U (m x k), V (n x k), k = min(m, n), and
singular values s_i spread geometrically from 1 down to 1/cond. The right-hand side b = A x_true + e
has a residual part e orthogonal to range(A) (for m > n), and the exact minimum-norm solution is
x* = V diag(1/s) U^T b. Both solvers run a fixed number of iterations; we record

    ||r_k|| = ||b - A x_k||,   ||A^T r_k||,   ||x_k - x*|| / ||x*||

and the first iteration at which each solver's own stop test (tolerance ``tol``) holds, if one does
within the iterations asked (the iteration limit itself is not a stop test here). Both converge
at a rate set by cond(A)^2 in exact arithmetic; LSMR's ||A^T r_k|| falls monotonically, CGLS's need not.

With a right preconditioner P both solvers run on A P and report x_k = P y_k; the curves then show
the original problem's ||b - A x_k|| and ||A^T (b - A x_k)||, computed from x_k, while each solver's stop
test is the one it applies to A P. :func:`iterations_against_condition` sweeps cond(A) and counts
LSMR iterations to the stop test with each preconditioner.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab.cgls import cgls_trace
from lsqlab.lsmr import lsmr_trace
from lsqlab.operators import linear_map, matmul
from lsqlab.preconditioners import column_scaling, sketch_preconditioner
from lsqlab.solver import STOP_REASONS, SolverOptions
from lsqlab.lab.problems import orthonormal_factors

MAX_COND = 1e12  # beyond this (in float64) the problem is numerically singular for these plots
MAX_SIZE = 2000
TRACERS = {"LSMR": lsmr_trace, "CGLS": cgls_trace}
SOLVERS = tuple(TRACERS)
PRECONDITIONERS = ("none", "Jacobi", "sketch")
ITERATION_LIMIT = 7  # the istop code of the iteration limit (``STOP_REASONS[7]``), not a stop test here


@dataclass(frozen=True)
class ConditionedProblem:
    """A, b and the exact minimum-norm least-squares solution x* (NumPy float64)."""

    A: np.ndarray
    b: np.ndarray
    x_star: np.ndarray
    singular_values: np.ndarray


def check_problem_size(m: int, n: int, cond: float) -> None:
    """Raise ValueError naming the problem with a shape or a condition number the explorer cannot use."""
    if not (1 <= m <= MAX_SIZE and 1 <= n <= MAX_SIZE):
        raise ValueError(f"rows and columns must be between 1 and {MAX_SIZE}, got {m} x {n}")
    if not np.isfinite(cond) or cond < 1:
        raise ValueError(f"the condition number must be a finite number >= 1, got {cond}")
    if cond > MAX_COND:
        raise ValueError(f"cond(A) = {cond:.1e} makes A numerically singular: choose cond <= {MAX_COND:.0e}")


def conditioned_problem(m: int, n: int, cond: float, seed: int = 0, residual: float = 0.1) -> ConditionedProblem:
    """A = U diag(s) V^T with s = geomspace(1, 1/cond, min(m, n)); b = A x_true + e, e ⟂ range(A) with
    ||e|| about ``residual`` sqrt(m - n) (tall problems only; 0: a consistent b)."""
    check_problem_size(m, n, cond)
    rng = np.random.default_rng(seed)
    k = min(m, n)
    U, V = orthonormal_factors(rng, m, n, k)
    s = np.geomspace(1.0, 1.0 / cond, k)
    A = (U * s) @ V.T
    b = A @ rng.standard_normal(n)
    if m > n:
        noise = rng.standard_normal(m)
        b = b + residual * (noise - U @ (U.T @ noise))
    x_star = V @ ((U.T @ b) / s)
    return ConditionedProblem(A, b, x_star, s)


class ConvergenceCurves(NamedTuple):
    """Per-iteration history of one solver (row k: after iteration k + 1) and where it would stop."""

    normr: np.ndarray
    normar: np.ndarray
    error: np.ndarray  # ||x_k - x*|| / ||x*||
    stop_iteration: int | None  # first iteration (1-based) whose stop test held; None: none did
    stop_code: int | None

    @property
    def stop_reason(self) -> str:
        if self.stop_code is None:
            return "no stop test held within these iterations"
        return STOP_REASONS[self.stop_code]


def traced_length(iterations: int) -> int:
    """The number of steps actually traced: the next power of two (at least 64), so that moving the
    iteration count recompiles only when it crosses a power of two; the curves are then cut."""
    return max(64, 1 << (iterations - 1).bit_length())


def check_preconditioner(name: str, m: int, n: int) -> None:
    """Raise ValueError for an unknown preconditioner, or the sketch on a wide problem."""
    if name not in PRECONDITIONERS:
        raise ValueError(f"unknown preconditioner {name!r}; choose one of {PRECONDITIONERS}")
    if name == "sketch" and m < n:
        raise ValueError(f"the sketch preconditioner needs a tall problem (m >= n), got {m} x {n}")


def preconditioner_matrix(problem: ConditionedProblem, name: str, seed: int = 0) -> np.ndarray:
    """P as a dense n x n matrix: identity, Jacobi diag(1/||a_j||), or the sketch's rank-revealing
    P (n x k) padded with zero columns to n (a zero column of A P changes neither x_k nor the stop tests)."""
    m, n = problem.A.shape
    check_preconditioner(name, m, n)
    if name == "none":
        return np.eye(n)
    if name == "Jacobi":
        return np.diag(np.asarray(column_scaling(jnp.asarray(problem.A)).scale))
    basis = np.asarray(sketch_preconditioner(jnp.asarray(problem.A), jax.random.key(seed)).matrix)
    return np.pad(basis, ((0, 0), (0, n - basis.shape[1])))


@partial(jax.jit, static_argnames=("iterations", "preconditioned", "solvers"))
def _traces(A: jax.Array, P: jax.Array, b: jax.Array, x_star: jax.Array, tol: jax.Array, iterations: int,
            preconditioned: bool, solvers: tuple[str, ...]):
    """Traces of ``solvers`` on A P and relative errors of x_k = P y_k; ``tol`` is traced (atol = btol =
    tol): no recompilation. Unpreconditioned, the norms are the solvers' own recurrences."""
    AP = A @ P if preconditioned else A
    op = linear_map(matmul, AP, AP.shape, A.dtype)
    options = SolverOptions(atol=tol, btol=tol)
    results = []
    for solver in solvers:
        trace = TRACERS[solver](op, b, 0.0, iterations, options)
        xs, normr, normar = trace.xs, trace.normr, trace.normar
        if preconditioned:
            xs = xs @ P.T
            residuals = b - xs @ A.T
            normr, normar = jnp.linalg.norm(residuals, axis=1), jnp.linalg.norm(residuals @ A, axis=1)
        error = jnp.linalg.norm(xs - x_star, axis=1) / jnp.linalg.norm(x_star)
        results.append((normr, normar, error, trace.istop))
    return results


def compare_solvers(problem: ConditionedProblem, iterations: int, tol: float = 1e-8,
                    preconditioner: str = "none", seed: int = 0,
                    solvers: tuple[str, ...] = SOLVERS) -> dict[str, ConvergenceCurves]:
    """``{"LSMR": curves, "CGLS": curves}`` (or those of ``solvers``) over exactly ``iterations``
    steps of each, on A P."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if not (0 < tol < 1):
        raise ValueError(f"the tolerance must lie in (0, 1), got {tol}")
    if not solvers or not set(solvers) <= set(SOLVERS):
        raise ValueError(f"solvers must be a non-empty tuple from {SOLVERS}, got {solvers}")
    P = preconditioner_matrix(problem, preconditioner, seed)
    results = _traces(jnp.asarray(problem.A), jnp.asarray(P), jnp.asarray(problem.b), jnp.asarray(problem.x_star),
                      jnp.asarray(tol), traced_length(iterations), preconditioner != "none", solvers)
    curves = {}
    for name, result in zip(solvers, results):
        normr, normar, error, istop = (np.asarray(values)[:iterations] for values in result)
        stopped = np.flatnonzero((istop >= 0) & (istop != ITERATION_LIMIT))
        first = int(stopped[0]) if stopped.size else None
        curves[name] = ConvergenceCurves(
            normr, normar, error, None if first is None else first + 1, None if first is None else int(istop[first]),
        )
    return curves


def iterations_against_condition(m: int, n: int, conds: np.ndarray, tol: float = 1e-8, iterations: int = 1000,
                                 preconditioners: tuple[str, ...] = PRECONDITIONERS,
                                 seed: int = 0) -> dict[str, np.ndarray]:
    """First LSMR iteration k with ||x_k - x*|| / ||x*|| <= tol, per cond(A) and preconditioner (NaN:
    not within ``iterations``; the sketch is all NaN for wide problems). The error, not the stop test,
    decides: at large cond(A) the stop test can hold long before x_k is accurate. The right-hand
    sides are consistent (b = A x_true): with a residual, no solver gets the error below about
    cond(A)^2 eps ||r|| / (||A|| ||x||), preconditioned or not."""
    counts = {name: np.full(len(conds), np.nan) for name in preconditioners}
    for i, cond in enumerate(conds):
        problem = conditioned_problem(m, n, float(cond), seed, residual=0.0)
        for name in preconditioners:
            if name == "sketch" and m < n:
                continue
            lsmr = compare_solvers(problem, iterations, 0.1 * tol, name, seed, solvers=("LSMR",))["LSMR"]
            reached = np.flatnonzero(lsmr.error <= tol)
            counts[name][i] = reached[0] + 1 if reached.size else np.nan
    return counts
