"""How exact is a gradient through a least-squares solve? Adjoint rule vs unrolling vs finite differences.

For x*(A, b) = LstSq(A, b) (damp = 0, minimum-norm), a fixed g and the scalar L = <g, x*>, we compare
the directional derivative dL[E_A, E_b] = <dL/dA, E_A> + <dL/db, E_b> along a fixed random direction
computed three ways, each with the solver run to tolerance ``tol`` (atol = btol = tol):

  * adjoint: ``jax.grad`` through :func:`lsqlab.lstsq` (custom rules; 3 solves, 5 with
    ``assume_full_rank=False``, whatever the iteration count),
  * unrolled: ``jax.grad`` through :func:`lsqlab.lsmr.lsmr_fixed_iterations` (reverse mode through
    every iteration: memory grows with the iteration budget),
  * finite differences: (L(A + hE_A, b + hE_b) - L(A - hE_A, b - hE_b)) / 2h (2 solves per direction,
    2 (mn + m) for the whole gradient; the solver error is amplified by 1/h),

against the dense reference :func:`lsqlab.dense.lstsq_dense_vjp`. The test matrix has rank ``rank``
with nonzero singular values spread geometrically over [1/cond, 1]. At rank < min(m, n) the
derivative exists only at constant rank: A + hE has full rank, so finite differences fail, and the
adjoint rule is exact only with ``assume_full_rank=False``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab.dense import lstsq_dense_vjp
from lsqlab.lsmr import lsmr, lsmr_fixed_iterations
from lsqlab.lstsq import lstsq
from lsqlab.operators import linear_map, matmul
from lsqlab.solver import SolverOptions
from lsqlab.lab.problems import matrix_with_spectrum

METHODS = ("adjoint", "unrolled", "finite differences")
TOLERANCES = tuple(10.0**-k for k in range(2, 15, 3))  # 1e-2 .. 1e-14: each compiles the adjoint once
TIMED_REPEATS = 3  # timed calls per method and tolerance, after a warm-up call
SOLVES = {"adjoint": "3 (5 without assume_full_rank)", "unrolled": "1, taped", "finite differences": "2 per direction"}


@dataclass(frozen=True)
class GradientProblem:
    """A (m x n, rank ``rank``), b, the weights g of L = <g, x*>, a direction (E_A, E_b) and dL along it."""

    A: np.ndarray
    b: np.ndarray
    g: np.ndarray
    direction_A: np.ndarray
    direction_b: np.ndarray
    reference: float  # dL[E_A, E_b] from the dense SVD formulas

    @property
    def rank(self) -> int:
        """The numerical rank of A (singular values above max(m, n) eps s_max)."""
        s = np.linalg.svd(self.A, compute_uv=False)
        return int(np.sum(s > max(self.A.shape) * np.finfo(float).eps * s[0]))


def check_settings(m: int, n: int, rank: int, cond: float, h: float) -> None:
    """Raise ValueError naming the first setting the experiment cannot use."""
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"the rank must lie between 1 and min(m, n) = {min(m, n)}, got {rank}")
    if not (np.isfinite(cond) and 1 <= cond <= 1e8):
        raise ValueError(f"cond must lie in [1, 1e8], got {cond}")
    if not (np.isfinite(h) and 0 < h < 1):
        raise ValueError(f"the finite-difference step h must lie in (0, 1), got {h}")


def gradient_problem(m: int, n: int, rank: int, cond: float = 100.0, seed: int = 0) -> GradientProblem:
    """A = U diag(s) V^T with ``rank`` singular values geomspace(1, 1/cond); everything else Gaussian."""
    check_settings(m, n, rank, cond, 1e-6)
    rng = np.random.default_rng(seed)
    A = matrix_with_spectrum(rng, m, n, np.geomspace(1.0, 1.0 / cond, rank))
    b, g = rng.standard_normal(m), rng.standard_normal(n)
    direction_A, direction_b = rng.standard_normal((m, n)), rng.standard_normal(m)
    dA, db, _ = lstsq_dense_vjp(A, b, 0.0, g, rcond=1e-10)
    reference = float(np.sum(dA * direction_A) + db @ direction_b)
    return GradientProblem(A, b, g, direction_A, direction_b, reference)


class Measurement(NamedTuple):
    """Per tolerance (rows follow ``tolerances``): relative error and seconds of each method (median of
    the timed calls, compilation excluded)."""

    tolerances: tuple[float, ...]
    error: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    iterations: np.ndarray  # LSMR iterations of the forward solve


def measure(problem: GradientProblem, h: float = 1e-6, *, assume_full_rank: bool = True,
            tolerances: tuple[float, ...] = TOLERANCES, repeats: int = TIMED_REPEATS) -> Measurement:
    """Directional-derivative error |D - D_ref| / |D_ref| and wall time of each method at each tolerance.

    The time is the median of ``repeats`` calls after one untimed call, which compiles: it excludes
    compilation (the adjoint compiles once per tolerance, seconds against milliseconds per call).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    A, b, g, EA, Eb = (jnp.asarray(a) for a in (problem.A, problem.b, problem.g, problem.direction_A,
                                                problem.direction_b))
    budget = 4 * max(problem.A.shape)
    error = {method: np.empty(len(tolerances)) for method in METHODS}
    seconds = {method: np.empty(len(tolerances)) for method in METHODS}
    iterations = np.empty(len(tolerances), int)
    for i, tol in enumerate(tolerances):
        runs = {
            "adjoint": lambda: _adjoint(tol, budget, assume_full_rank)(A, b, g, EA, Eb),
            "unrolled": lambda: _unrolled(budget)(A, b, g, EA, Eb, tol),
            "finite differences": lambda: _finite_difference(budget)(A, b, g, EA, Eb, tol, h),
        }
        for method, run in runs.items():
            value, its = jax.block_until_ready(run())  # compiles on first use: not timed
            seconds[method][i] = _median_seconds(run, repeats)
            error[method][i] = abs(float(value) - problem.reference) / abs(problem.reference)
            if method == "adjoint":
                iterations[i] = int(its)
    return Measurement(tuple(tolerances), error, seconds, iterations)


def _median_seconds(run, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``run`` (each waited for)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _directional_gradient(loss):
    """jit of (A, b, g, E_A, E_b, *extra) -> (<dL/dA, E_A> + <dL/db, E_b>, aux) for
    ``loss(A, b, g, *extra) -> (L, aux)``."""

    @jax.jit
    def run(A, b, g, EA, Eb, *extra):
        (grad_A, grad_b), aux = jax.grad(loss, argnums=(0, 1), has_aux=True)(A, b, g, *extra)
        return jnp.sum(grad_A * EA) + jnp.dot(grad_b, Eb), aux

    return run


@lru_cache(maxsize=64)
def _adjoint(tol: float, maxiter: int, assume_full_rank: bool):
    """dL[E] by ``jax.grad`` through ``lstsq`` (tolerances are static there: one compilation each)."""

    def loss(A, b, g):
        options = SolverOptions(atol=tol, btol=tol, maxiter=maxiter)
        x, info = lstsq(A, b, options=options, assume_full_rank=assume_full_rank)
        return jnp.dot(g, x), info.iterations

    return _directional_gradient(loss)


@lru_cache(maxsize=8)
def _unrolled(iterations: int):
    """dL[E] by ``jax.grad`` through ``iterations`` frozen-after-stop LSMR steps (tolerance traced)."""

    def loss(A, b, g, tol):
        op = linear_map(matmul, A, A.shape, A.dtype)
        x, info = lsmr_fixed_iterations(op, b, 0.0, iterations, SolverOptions(atol=tol, btol=tol))
        return jnp.dot(g, x), info.iterations

    return _directional_gradient(loss)


@lru_cache(maxsize=8)
def _finite_difference(maxiter: int):
    """Central difference of L along (E_A, E_b) with two plain LSMR solves (tolerance traced)."""

    def loss(A, b, g, tol):
        op = linear_map(matmul, A, A.shape, A.dtype)
        x, info = lsmr(op, b, 0.0, None, SolverOptions(atol=tol, btol=tol, maxiter=maxiter))
        return jnp.dot(g, x), info.iterations

    @jax.jit
    def run(A, b, g, EA, Eb, tol, h):
        plus, its = loss(A + h * EA, b + h * Eb, g, tol)
        minus, _ = loss(A - h * EA, b - h * Eb, g, tol)
        return (plus - minus) / (2 * h), its

    return run


class DampingSweep(NamedTuple):
    """Relative errors of s = (A^T A + damp^2 I)^{-1} g at each damping, against a dense solve."""

    damps: np.ndarray
    shortcut: np.ndarray  # (g - A^T p) / damp^2, p = LstSq(A^T, g, damp)
    stacked: np.ndarray  # w_2 / damp, w = LstSq([A^T, damp I], g, 0) (lsqlab's rule)
    rule: np.ndarray  # dL/db = A s through jax.grad of lstsq, against A s from the dense solve


def damping_sweep(A: np.ndarray, g: np.ndarray, damps: np.ndarray, tol: float = 1e-12) -> DampingSweep:
    """Measure the two ways of computing N^{-1} g for damp > 0, and the gradient lstsq returns.

    The shortcut subtracts two nearly equal vectors, g - A^T p = damp^2 s, so a solve with relative
    error tol gives s with relative error about tol (||A|| / damp)^2; the stacked solve has no such
    subtraction. All solves: atol = btol = tol, float64.
    """
    m, n = A.shape
    A_j, g_j = jnp.asarray(A, jnp.float64), jnp.asarray(g, jnp.float64)
    solve = SolverOptions(atol=tol, btol=tol, maxiter=10 * (m + n))
    errors = {"shortcut": [], "stacked": [], "rule": []}
    for damp in damps:
        reference = np.linalg.solve(A.T @ A + damp**2 * np.eye(n), g)
        relative = lambda s, ref=reference: float(np.linalg.norm(np.asarray(s) - ref) / np.linalg.norm(ref))
        p, _ = lstsq(A_j.T, g_j, damp=damp, options=solve)
        errors["shortcut"].append(relative((g_j - A_j.T @ p) / damp**2))
        w, _ = lstsq(lambda v: A_j.T @ v[:m] + damp * v[m:], g_j, domain=jnp.zeros(m + n), options=solve)
        errors["stacked"].append(relative(w[m:] / damp))
        grad_b = jax.grad(lambda b: jnp.dot(g_j, lstsq(A_j, b, damp=damp, options=solve)[0]))(jnp.zeros(m))
        ref_b = A @ reference
        errors["rule"].append(float(np.linalg.norm(np.asarray(grad_b) - ref_b) / np.linalg.norm(ref_b)))
    return DampingSweep(np.asarray(damps), *(np.asarray(errors[k]) for k in ("shortcut", "stacked", "rule")))
