"""Values: LSMR against SciPy's lsmr (same stopping rules) and dense float64 references.

Agreement with SciPy is checked in two regimes. Along a fixed number of iterations before Lanczos
loses orthogonality, both implementations run the same recurrence and agree to rounding (1e-12).
At convergence, rounding differences are amplified once Ritz values converge (Paige), so the two
solutions differ by less than their own distance to the exact solution, which the tolerance sets;
iteration counts agree within one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from lsqlab import STOP_REASONS, lstsq, operators
from lsqlab.dense import lstsq_dense
from lsqlab.lsmr import lsmr
from lsqlab.operators import streamed_mv_rmv
from lsqlab.solver import SolverOptions
from lsqlab.lab.problems import matrix_with_spectrum

# (name, m, n, cond, rank or None, damp); singular values log-spaced from 1 to 1/cond, except
# "ill-conditioned": most in [0.1, 1] and three at 1e-4, 1e-6, 1e-8 (cond 1e8, and LSMR converges).
CASES = [
    ("tall", 300, 100, 1e1, None, 0.0),
    ("wide", 100, 300, 1e1, None, 0.0),
    ("square", 150, 150, 1e1, None, 0.0),
    ("damped", 300, 100, 1e2, None, 0.05),
    ("ill-conditioned", 300, 100, 1e8, None, 0.0),
    ("rank-deficient", 300, 100, 1e1, 60, 0.0),
    ("rank-deficient damped", 300, 100, 1e2, 60, 0.05),
]


def build(rng, m, n, cond, rank):
    k = min(m, n)
    if cond >= 1e8:
        s = np.concatenate([np.logspace(0, -1, k - 3), [1e-4, 1e-6, 1e-8]])
    else:
        s = np.logspace(0, -np.log10(cond), k)
    if rank is not None:
        s[rank:] = 0.0
    return matrix_with_spectrum(rng, m, n, s), rng.standard_normal(m)


@pytest.mark.parametrize("name,m,n,cond,rank,damp", CASES, ids=[c[0] for c in CASES])
def test_same_iterates_as_scipy_before_loss_of_orthogonality(rng, name, m, n, cond, rank, damp):
    A, b = build(rng, m, n, cond, rank)
    for k in (1, 4, 8):
        ref = spla.lsmr(A, b, damp=damp, atol=0, btol=0, conlim=0, maxiter=k)
        x, info = lstsq(jnp.asarray(A), jnp.asarray(b), damp=damp, options=SolverOptions(atol=0, btol=0, conlim=0, maxiter=k))
        assert int(info.iterations) == ref[2] == k
        np.testing.assert_allclose(np.asarray(x), ref[0], rtol=0, atol=1e-11 * np.linalg.norm(ref[0]))
        np.testing.assert_allclose(float(info.normr), ref[3], rtol=1e-12)
        np.testing.assert_allclose(float(info.normar), ref[4], rtol=1e-9, atol=1e-13 * ref[4] + 1e-300)
        np.testing.assert_allclose(float(info.norma), ref[5], rtol=1e-12)
        np.testing.assert_allclose(float(info.conda), ref[6], rtol=1e-12)


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
@pytest.mark.parametrize("name,m,n,cond,rank,damp", CASES, ids=[c[0] for c in CASES])
def test_converged_solution_matches_scipy_and_dense(rng, name, m, n, cond, rank, damp, tol):
    A, b = build(rng, m, n, cond, rank)
    ref = spla.lsmr(A, b, damp=damp, atol=tol, btol=tol, maxiter=10 * n)
    x, info = lstsq(jnp.asarray(A), jnp.asarray(b), damp=damp, options=SolverOptions(atol=tol, btol=tol, maxiter=10 * n))
    x = np.asarray(x)
    assert abs(int(info.iterations) - ref[2]) <= 1
    assert int(info.istop) == ref[1] != 7
    exact = lstsq_dense(A, b, damp)
    scale = np.linalg.norm(exact)
    ours_err, scipy_err = np.linalg.norm(x - exact), np.linalg.norm(ref[0] - exact)
    assert np.linalg.norm(x - ref[0]) <= max(1e-10 * scale, 0.5 * scipy_err)
    assert ours_err <= 1.5 * scipy_err + 1e-12 * scale
    assert_stopping_rule_holds(A, b, damp, x, tol)


def assert_stopping_rule_holds(A, b, damp, x, tol):
    """The stop tests with true quantities for the stacked problem [A; damp I] x ~ [b; 0]
    (LSMR's own ||A|| and ||r|| are estimates: allow a factor 2)."""
    n = A.shape[1]
    A_bar = np.vstack([A, damp * np.eye(n)])
    r_bar = np.concatenate([b, np.zeros(n)]) - A_bar @ x
    norm_a = np.linalg.norm(A_bar)
    small_residual = np.linalg.norm(r_bar) <= 2 * (tol * np.linalg.norm(b) + tol * norm_a * np.linalg.norm(x))
    small_normal_residual = np.linalg.norm(A_bar.T @ r_bar) <= 2 * tol * norm_a * np.linalg.norm(r_bar)
    assert small_residual or small_normal_residual


def test_spread_spectrum_stops_at_the_iteration_limit_like_scipy(rng):
    """Singular values spread evenly over [1e-8, 1]: neither solver converges in min(m, n) steps."""
    A = matrix_with_spectrum(rng, 300, 100, np.logspace(0, -8, 100))
    b = rng.standard_normal(300)
    ref = spla.lsmr(A, b)
    x, info = lstsq(jnp.asarray(A), jnp.asarray(b))
    assert int(info.istop) == ref[1] == 7 and info.reason == STOP_REASONS[7]
    assert int(info.iterations) == ref[2] == 100
    # Both stop far from the solution; their residual norms agree to the rounding amplification.
    np.testing.assert_allclose(float(info.normr), ref[3], rtol=1e-2)
    assert np.all(np.isfinite(np.asarray(x)))


def test_minimum_norm_solution_of_wide_and_rank_deficient(rng):
    for m, n, rank in ((20, 50, None), (50, 30, 10)):
        A, b = build(rng, m, n, 10.0, rank)
        x, _ = lstsq(jnp.asarray(A), jnp.asarray(b), options=SolverOptions(atol=1e-12, btol=1e-12, maxiter=1000))
        np.testing.assert_allclose(np.asarray(x), np.linalg.pinv(A, rcond=1e-10) @ b, atol=1e-9)


def test_info_reports_true_residuals(rng):
    A, b = build(rng, 80, 30, 1e2, None)
    x, info = lstsq(jnp.asarray(A), jnp.asarray(b), options=SolverOptions(atol=1e-10, btol=1e-10, maxiter=300))
    r = b - A @ np.asarray(x)
    np.testing.assert_allclose(float(info.normr), np.linalg.norm(r), rtol=1e-8)
    assert float(info.normar) <= 1e-8 * np.linalg.norm(A) * np.linalg.norm(r)
    np.testing.assert_allclose(float(info.normx), np.linalg.norm(np.asarray(x)), rtol=1e-12)
    assert 1 <= float(info.conda) <= np.linalg.cond(A) * (1 + 1e-6)
    assert bool(info.converged)


def test_zero_rhs_gives_zero_solution(rng):
    A, _ = build(rng, 30, 10, 10.0, None)
    x, info = lstsq(jnp.asarray(A), jnp.zeros(30))
    assert np.all(np.asarray(x) == 0) and int(info.istop) == 0 and int(info.iterations) == 0


def test_iteration_limit_is_reported(rng):
    A, b = build(rng, 300, 100, 1e3, None)
    x, info = lstsq(jnp.asarray(A), jnp.asarray(b), options=SolverOptions(atol=1e-14, btol=1e-14, maxiter=7))
    assert int(info.iterations) == 7 and int(info.istop) == 7
    assert "iteration limit" in info.reason and not bool(info.converged)
    assert np.all(np.isfinite(np.asarray(x)))


def test_warm_start_matches_scipy_x0(rng):
    A, b = build(rng, 60, 20, 10.0, None)
    x0 = rng.standard_normal(20)
    for k in (3, 6):  # same iterates from the same start
        ref = spla.lsmr(A, b, x0=x0, atol=0, btol=0, conlim=0, maxiter=k)
        x, _ = lstsq(jnp.asarray(A), jnp.asarray(b), x0=jnp.asarray(x0), options=SolverOptions(atol=0, btol=0, conlim=0, maxiter=k))
        np.testing.assert_allclose(np.asarray(x), ref[0], atol=1e-12 * np.linalg.norm(ref[0]))
    ref = spla.lsmr(A, b, x0=x0, atol=1e-10, btol=1e-10, maxiter=200)
    x, info = lstsq(jnp.asarray(A), jnp.asarray(b), x0=jnp.asarray(x0), options=SolverOptions(atol=1e-10, btol=1e-10, maxiter=200))
    assert abs(int(info.iterations) - ref[2]) <= 1
    np.testing.assert_allclose(np.asarray(x), lstsq_dense(A, b), atol=1e-8)


def test_function_operator_with_pytrees(rng):
    """A pytree-to-pytree linear map: x = {"w": (3, 4), "c": (4,)} -> b = (10, 4) rows of a design."""
    design = jnp.asarray(rng.standard_normal((10, 3)))

    def A(x):
        return design @ x["w"] + x["c"][None, :]

    b = jnp.asarray(rng.standard_normal((10, 4)))
    domain = {"w": jnp.zeros((3, 4)), "c": jnp.zeros(4)}
    x, info = lstsq(A, b, x0=domain, options=SolverOptions(atol=1e-12, btol=1e-12))
    assert set(x) == {"w", "c"} and x["w"].shape == (3, 4)
    dense = np.hstack([np.asarray(design), np.ones((10, 1))])
    ref = np.linalg.lstsq(dense, np.asarray(b), rcond=None)[0]
    np.testing.assert_allclose(np.asarray(x["w"]), ref[:3], atol=1e-9)
    np.testing.assert_allclose(np.asarray(x["c"]), ref[3], atol=1e-9)


def test_matrix_free_convolution_operator(rng):
    """A 1-D blur given only as a function (jnp.convolve), against its dense matrix."""
    kernel = jnp.array([0.25, 0.5, 0.25])
    n = 64

    def blur(v):
        return jnp.convolve(v, kernel, mode="full")

    dense = np.stack([np.convolve(e, np.asarray(kernel), mode="full") for e in np.eye(n)], axis=1)
    b = rng.standard_normal(n + 2)
    x, _ = lstsq(blur, jnp.asarray(b), domain=jax.ShapeDtypeStruct((n,), jnp.float64), damp=1e-2,
                 options=SolverOptions(atol=1e-12, btol=1e-12, maxiter=2000))
    np.testing.assert_allclose(np.asarray(x), lstsq_dense(dense, b, 1e-2), atol=1e-8)


def test_jit_and_vmap_over_rhs_and_operators(rng):
    As = jnp.asarray(np.stack([build(rng, 40, 15, 10.0, None)[0] for _ in range(3)]))
    bs = jnp.asarray(rng.standard_normal((3, 40)))
    solve = jax.jit(lambda A, b: lstsq(A, b, options=SolverOptions(atol=1e-12, btol=1e-12, maxiter=500))[0])
    batched_rhs = jax.vmap(solve, in_axes=(None, 0))(As[0], bs)
    batched_ops = jax.vmap(solve)(As, bs)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(batched_rhs[i]), lstsq_dense(As[0], bs[i]), atol=1e-9)
        np.testing.assert_allclose(np.asarray(batched_ops[i]), lstsq_dense(As[i], bs[i]), atol=1e-9)


def test_float32_matches_scipy_in_float32(rng):
    A, b = build(rng, 200, 50, 1e2, None)
    A32, b32 = A.astype(np.float32), b.astype(np.float32)
    x, info = lstsq(jnp.asarray(A32), jnp.asarray(b32), options=SolverOptions(atol=1e-5, btol=1e-5, maxiter=500))
    ref = spla.lsmr(A32, b32, atol=1e-5, btol=1e-5, maxiter=500)
    assert x.dtype == jnp.float32 and bool(info.converged) and int(info.istop) == ref[1]
    # Rounding in float32 moves the stopping point by a few iterations (here 112 against 109).
    assert abs(int(info.iterations) - ref[2]) <= 0.05 * ref[2] + 1
    exact = lstsq_dense(A, b)
    err = np.linalg.norm(np.asarray(x, np.float64) - exact)
    assert err <= 1.5 * np.linalg.norm(ref[0] - exact)
    # LSMR's recurred ||A^T r|| drifts from the true one by O(eps32 ||A||^2 ||x||): test at 10 atol.
    assert_stopping_rule_holds(A, b, 0.0, np.asarray(x, np.float64), 1e-4)


def test_fixed_iteration_scan_equals_the_while_loop(rng):
    from lsqlab.lsmr import lsmr, lsmr_fixed_iterations
    from lsqlab.operators import linear_map, matmul

    A, b = build(rng, 80, 30, 1e2, None)
    op = linear_map(matmul, jnp.asarray(A), A.shape, jnp.float64)
    options = SolverOptions(atol=1e-8, btol=1e-8, maxiter=300)
    x_while, info_while = lsmr(op, jnp.asarray(b), 0.0, None, options)
    x_scan, info_scan = lsmr_fixed_iterations(op, jnp.asarray(b), 0.0, 300, options)
    assert int(info_scan.iterations) == int(info_while.iterations) < 300
    np.testing.assert_array_equal(np.asarray(x_scan), np.asarray(x_while))


@pytest.mark.parametrize("m, n, block_rows", [(103, 7, 10), (100, 7, 10), (5, 3, 10), (64, 9, 1)])
def test_streamed_products_equal_the_two_plain_products(rng, m, n, block_rows):
    """One pass over row blocks (with a remainder block, or one block larger than A) gives
    t = A v - alpha u and A^T t as the two separate products do."""
    A = jnp.asarray(rng.standard_normal((m, n)))
    v, u = jnp.asarray(rng.standard_normal(n)), jnp.asarray(rng.standard_normal(m))
    t, at_t = jax.jit(streamed_mv_rmv, static_argnums=4)(A, v, jnp.asarray(0.3), u, block_rows)
    t_plain = np.asarray(A) @ np.asarray(v) - 0.3 * np.asarray(u)
    np.testing.assert_allclose(np.asarray(t), t_plain, rtol=0, atol=1e-13 * np.linalg.norm(t_plain))
    np.testing.assert_allclose(np.asarray(at_t), np.asarray(A).T @ t_plain, rtol=0,
                               atol=1e-13 * np.linalg.norm(A) * np.linalg.norm(t_plain))


def test_lsmr_on_a_streamed_matrix_matches_the_plain_products(rng, monkeypatch):
    """Matrices above STREAM_BYTES are streamed once per step on the CPU: the iterates are those of
    the two-product LSMR up to rounding (A^T (t / beta) against (A^T t) / beta), and the solve
    converges to the dense answer."""
    monkeypatch.setattr(operators, "STREAM_BYTES", 0)
    monkeypatch.setattr(operators, "BLOCK_BYTES", 40 * 60 * 8)  # 40-row blocks: 7 and a tail of 20
    A, b = map(jnp.asarray, build(rng, 300, 60, 1e3, None))
    op = operators.linear_map(operators.matmul, A, A.shape, A.dtype)
    assert op.mv_rmv is not None and op.T.mv_rmv is op.mv_rmv
    for k in (1, 4, 8):
        options = SolverOptions(atol=0, btol=0, conlim=0, maxiter=k)
        x, _ = lsmr(op, b, 0.0, None, options)
        x_plain, _ = lsmr(op._replace(mv_rmv=None), b, 0.0, None, options)
        np.testing.assert_allclose(np.asarray(x), np.asarray(x_plain), rtol=0, atol=1e-12 * np.linalg.norm(x_plain))
    x, info = jax.jit(lambda b: lsmr(op, b, 0.0, None, SolverOptions(atol=1e-12, btol=1e-12, maxiter=1000)))(b)
    exact = lstsq_dense(A, b)
    assert bool(info.converged)
    assert np.linalg.norm(np.asarray(x) - exact) <= 1e-9 * np.linalg.norm(exact)
