"""CGLS (the normal-equations baseline) and per-iteration traces used by the solver widgets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsqlab.lab.problems import matrix_with_spectrum
from lsqlab import lstsq
from lsqlab.cgls import cgls, cgls_trace
from lsqlab.dense import lstsq_dense
from lsqlab.lsmr import lsmr, lsmr_trace
from lsqlab.operators import linear_map, matmul
from lsqlab.solver import SolverOptions


def operator(A):
    return linear_map(matmul, jnp.asarray(A), A.shape, jnp.float64)


@pytest.mark.parametrize("damp", [0.0, 0.1])
def test_cgls_solves_and_differentiates_through_the_same_rules(rng, damp):
    A = matrix_with_spectrum(rng, 100, 30, np.logspace(0, -2, 30))
    b = rng.standard_normal(100)
    x, info = lstsq(jnp.asarray(A), jnp.asarray(b), damp=damp, solver=cgls, options=SolverOptions(atol=1e-12, maxiter=2000))
    exact = lstsq_dense(A, b, damp)
    assert int(info.istop) == 2
    np.testing.assert_allclose(np.asarray(x), exact, atol=1e-8 * np.linalg.norm(exact))
    loss = lambda b, solver: jnp.sum(lstsq(jnp.asarray(A), b, damp=damp, solver=solver, options=SolverOptions(atol=1e-12, btol=1e-12, maxiter=2000))[0] ** 2)
    g_cgls, g_lsmr = (jax.grad(loss)(jnp.asarray(b), s) for s in (cgls, lsmr))
    np.testing.assert_allclose(np.asarray(g_cgls), np.asarray(g_lsmr), atol=1e-7 * float(jnp.linalg.norm(g_lsmr)))


def test_cgls_reports_the_iteration_limit_and_zero_rhs(rng):
    A = matrix_with_spectrum(rng, 60, 20, np.logspace(0, -4, 20))
    _, info = cgls(operator(A), jnp.asarray(rng.standard_normal(60)), 0.0, None, SolverOptions(atol=1e-14, maxiter=5))
    assert int(info.istop) == 7 and int(info.iterations) == 5
    x, info = cgls(operator(A), jnp.zeros(60))
    assert int(info.istop) == 0 and np.all(np.asarray(x) == 0)


def test_lsmr_trace_follows_the_solver_iterates(rng):
    A = matrix_with_spectrum(rng, 80, 25, np.logspace(0, -2, 25))
    b = jnp.asarray(rng.standard_normal(80))
    trace = lsmr_trace(operator(A), b, 0.0, 12)
    assert trace.xs.shape == (12, 25)
    for k in (1, 6, 12):
        x, info = lsmr(operator(A), b, 0.0, None, SolverOptions(atol=0, btol=0, conlim=0, maxiter=k))
        np.testing.assert_allclose(np.asarray(trace.xs[k - 1]), np.asarray(x), atol=1e-13)
        np.testing.assert_allclose(float(trace.normr[k - 1]), float(info.normr), rtol=1e-12)


def test_lsmr_normal_residual_is_monotone_where_cgls_is_not(rng):
    """LSMR minimises ||A^T r_k|| over the Krylov space, CGLS minimises ||r_k||: on an
    inconsistent problem with cond 1e4 only LSMR's ||A^T r_k|| falls at every step."""
    A = matrix_with_spectrum(rng, 200, 40, np.logspace(0, -4, 40))
    b = jnp.asarray(rng.standard_normal(200))
    lsmr_run, cgls_run = lsmr_trace(operator(A), b, 0.0, 100), cgls_trace(operator(A), b, 0.0, 100)
    rises = lambda values: np.diff(np.asarray(values)) > 1e-12 * float(values[0])
    assert not rises(lsmr_run.normar).any()
    assert rises(cgls_run.normar).sum() >= 10
    assert not rises(cgls_run.normr).any()
