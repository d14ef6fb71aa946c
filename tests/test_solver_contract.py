"""Every solver of the package against the solver contract (:class:`lsqlab.solver.Solver`).

A new solver is checked by adding it to ``SOLVERS``: each test below runs it through the same
checks against an independent float64 reference (``scipy.linalg.lstsq`` on the stacked problem
[A; damp I] x = [b; 0], whose minimum-norm answer is LstSq(A, b, damp)):
  - x for tall, wide, square and rank-deficient A, damp in {0, 1e-10, 1e-3, 1, 10}, float64 (float32: a
    tall and a rank-deficient wide A), skipping the cases that are ill-posed in floating point;
  - info: scalar fields of the right dtypes, ``converged`` true, and the returned x meets the stop test;
  - hashability (a static argument of ``jax.jit``);
  - the gradient of ``lstsq(..., solver=s)`` against the dense reference VJP (:mod:`lsqlab.dense`).
``test_the_checks_catch_a_solver_without_minimum_norm`` shows that the checks can fail.
The preconditioned wrapper (:class:`lsqlab.preconditioners.Preconditioned`) needs an operator that
carries a preconditioner, so it is checked through ``lstsq(..., preconditioner=...)``.

Tolerances: the stop test ||Ā^T r̄|| <= atol ||Ā|| ||r̄|| (Ā = [A; damp I], r̄ = [b - A x; -damp x])
bounds the forward error by ||x - x*|| <= atol ||Ā|| ||r̄|| / sigma_min(Ā)^2, i.e. relative to
||x*|| about cond(A)^2 * atol; the problems have cond(A) = 10 on their row space, tol is 1e-10
(float64) or 1e-6 (float32, where rounding adds ~10 eps), and 10x that bound is allowed.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from lsqlab import SolverOptions, lstsq
from lsqlab.cgls import cgls
from lsqlab.dense import lstsq_dense_vjp, svd_solver
from lsqlab.lsmr import lsmr
from lsqlab.operators import linear_map, matmul
from lsqlab.preconditioners import column_scaling
from lsqlab.solver import CONVERGED_CODES, LstSqInfo

SOLVERS = [pytest.param(lsmr, id="lsmr"), pytest.param(cgls, id="cgls"), pytest.param(svd_solver, id="svd")]
DAMPS = (0.0, 1e-10, 1e-3, 1.0, 10.0)
COND = 10.0
TOL = {jnp.float64: 1e-10, jnp.float32: 1e-6}


def problem(shape: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A with singular values in [1, COND] on its row space; the rank-deficient ones have exactly
    repeated columns (tall) or rows (wide), so their null spaces are exact in any precision."""
    rng = np.random.default_rng(hash(shape) % 2**32)

    def spectrum(m: int, n: int) -> np.ndarray:
        k = min(m, n)
        U, _ = np.linalg.qr(rng.standard_normal((m, k)))
        V, _ = np.linalg.qr(rng.standard_normal((n, k)))
        return (U * np.linspace(1, COND, k)) @ V.T

    A = {"tall": lambda: spectrum(30, 8), "wide": lambda: spectrum(8, 30), "square": lambda: spectrum(12, 12),
         "tall rank 4": lambda: np.hstack([spectrum(30, 4)] * 2),
         "wide rank 4": lambda: np.vstack([spectrum(4, 30)] * 2)}[shape]()
    b = rng.standard_normal(A.shape[0])
    return A.astype(dtype), b.astype(dtype)


def reference(A: np.ndarray, b: np.ndarray, damp: float) -> np.ndarray:
    """LstSq(A, b, damp) in float64: the minimum-norm solution of [A; damp I] x = [b; 0]."""
    A, b = np.asarray(A, np.float64), np.asarray(b, np.float64)
    n = A.shape[1]
    stacked = np.vstack([A, damp * np.eye(n)])
    return scipy.linalg.lstsq(stacked, np.concatenate([b, np.zeros(n)]))[0]


@partial(jax.jit, static_argnums=(0, 1))
def _solve(solver, options, A, b, damp):
    """The solver on the matrix A, compiled once per (solver, options, shapes): damp is data."""
    return solver(linear_map(matmul, A, A.shape, A.dtype), b, damp, None, options)


def check_solve(solver, A: np.ndarray, b: np.ndarray, damp: float, dtype) -> None:
    """The contract's value checks for one solve, called directly (raises AssertionError)."""
    tol = TOL[dtype]
    options = SolverOptions(atol=tol, btol=tol, maxiter=10 * A.shape[1])
    x, info = _solve(solver, options, jnp.asarray(A), jnp.asarray(b), jnp.asarray(damp, dtype))
    assert isinstance(info, LstSqInfo)
    assert x.shape == (A.shape[1],) and x.dtype == dtype
    for name, value in info._asdict().items():
        assert jnp.shape(value) == (), name
        assert value.dtype == (jnp.int32 if name in ("iterations", "istop") else dtype), name
    assert bool(info.converged), info.reason
    assert int(info.istop) in CONVERGED_CODES

    x64, A64, b64 = (np.asarray(v, np.float64) for v in (x, A, b))
    floor = max(tol, 10 * float(jnp.finfo(dtype).eps))
    # the returned x meets the stop test (test 1: small ||r̄||, or test 2: small ||Ā^T r̄||), up to rounding
    stacked = np.vstack([A64, damp * np.eye(A.shape[1])])
    r = np.concatenate([b64 - A64 @ x64, -damp * x64])
    norm_a, normr = np.linalg.norm(stacked), np.linalg.norm(r)
    normar = np.linalg.norm(stacked.T @ r)
    rounding = float(jnp.finfo(dtype).eps) * norm_a * np.linalg.norm(x64)  # of A x in b's dtype
    test1 = normr <= 10 * (floor * np.linalg.norm(b64) + floor * norm_a * np.linalg.norm(x64))
    test2 = normar <= 10 * (floor * norm_a * normr + norm_a * rounding)
    assert test1 or test2, f"||r̄|| = {normr:.2e}, ||Ā^T r̄|| = {normar:.2e}: the stop test does not hold"
    expected = reference(A, b, damp)
    error = np.linalg.norm(x64 - expected) / max(np.linalg.norm(expected), 1e-300)
    assert error <= 10 * COND**2 * floor, f"relative error {error:.1e} against LstSq"


def well_posed(shape: str, damp: float, dtype) -> bool:
    """False where a backward-stable solver need not meet the tolerance: on a rank-deficient A,
    rounding gives null(A) singular values ~eps ||A||, which damp amplifies by 1 / damp^2."""
    eps = float(jnp.finfo(dtype).eps)
    return "rank" not in shape or damp == 0 or eps * COND / damp**2 <= COND**2 * max(TOL[dtype], 10 * eps)


# every shape in float64, a tall and a rank-deficient wide one in float32 (compilations dominate the run time)
CASES = [(shape, jnp.float64) for shape in ("tall", "wide", "square", "tall rank 4", "wide rank 4")] + [
    ("tall", jnp.float32), ("wide rank 4", jnp.float32)]


@pytest.mark.parametrize("shape,dtype", CASES, ids=[f"{s}-{jnp.dtype(d).name}" for s, d in CASES])
@pytest.mark.parametrize("solver", SOLVERS)
def test_returns_lstsq(solver, shape, dtype):
    A, b = problem(shape, dtype)
    for damp in DAMPS:
        if well_posed(shape, damp, dtype):
            check_solve(solver, A, b, damp, dtype)


def _warm_started_lsmr(op, b, damp, x0, options):
    """Not a solver of the contract: LSMR warm-started from x0 = linspace(-1, 1, n) returns a
    least-squares solution with x0's null-space part kept, not the minimum-norm one."""
    return lsmr(op, b, damp, jnp.linspace(-1, 1, op.shape[1], dtype=b.dtype), options)


@pytest.mark.parametrize("shape", ["wide", "tall rank 4"])
def test_the_checks_catch_a_solver_without_minimum_norm(shape):
    A, b = problem(shape, jnp.float64)
    check_solve(lsmr, A, b, 0.0, jnp.float64)
    with pytest.raises(AssertionError, match="relative error"):
        check_solve(_warm_started_lsmr, A, b, 0.0, jnp.float64)


@pytest.mark.parametrize("solver", SOLVERS)
def test_is_a_static_jit_argument(solver):
    assert hash(solver) == hash(solver) and solver == solver
    identity = jax.jit(lambda s, x: x, static_argnums=0)
    identity(solver, 1.0)
    identity(solver, 2.0)
    assert identity._cache_size() == 1  # the same solver hashes alike: one compilation


@pytest.mark.parametrize("case", [("tall", 0.0), ("wide", 1e-3), ("wide rank 4", 0.0)], ids=lambda c: f"{c[0]}, damp {c[1]}")
@pytest.mark.parametrize("solver", SOLVERS)
def test_gradient_matches_the_dense_vjp(solver, case):
    shape, damp = case
    A, b = problem(shape, jnp.float64)
    g = np.random.default_rng(1).standard_normal(A.shape[1])
    options = SolverOptions(atol=1e-12, btol=1e-12, maxiter=20 * A.shape[1])
    full_rank = "rank" not in shape

    def loss(A, b, damp):
        x, _ = lstsq(A, b, damp=damp, options=options, solver=solver, assume_full_rank=full_rank)
        return jnp.dot(jnp.asarray(g), x)

    got = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(A), jnp.asarray(b), jnp.asarray(damp))
    expected = lstsq_dense_vjp(A, b, damp, g)
    scale = 1 + max(np.linalg.norm(e) for e in expected)
    for name, a, e in zip(("dA", "db", "ddamp"), got, expected):
        np.testing.assert_allclose(np.asarray(a), e, atol=1e-7 * scale, err_msg=name)


@pytest.mark.parametrize("shape,damp", [("tall", 0.0), ("wide", 1.0)])
def test_preconditioned_lsmr_returns_lstsq(shape, damp):
    """The preconditioned wrapper, through lstsq (a wide undamped problem is refused there)."""
    A, b = problem(shape, jnp.float64)
    options = SolverOptions(atol=1e-10, btol=1e-10, maxiter=300)
    x, info = lstsq(jnp.asarray(A), jnp.asarray(b), damp=damp, options=options,
                    preconditioner=column_scaling(jnp.asarray(A)))
    assert bool(info.converged), info.reason
    expected = reference(A, b, damp)
    np.testing.assert_allclose(np.asarray(x), expected, atol=10 * COND**2 * 1e-10 * np.linalg.norm(expected))
