"""Reliability: bad input raises a clear error before tracing; trouble met inside jit is reported."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsqlab import STOP_REASONS, SolverOptions, lstsq

A = jnp.asarray(np.random.default_rng(0).standard_normal((6, 3)))
B = jnp.ones(6)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(A=jnp.ones((6, 3, 1))), ValueError, "2-D"),
        (dict(b=jnp.ones(5)), ValueError, "has 5 entries"),
        (dict(b=jnp.ones((6, 1))), ValueError, "1-D"),
        (dict(A=A.astype(jnp.float32)), TypeError, "dtype"),
        (dict(A=jnp.ones((6, 3), jnp.int32)), TypeError, "floating"),
        (dict(b=B.astype(jnp.complex128)), TypeError, "complex"),
        (dict(b=B.at[2].set(jnp.nan)), ValueError, "b contains NaN"),
        (dict(A=A.at[0, 0].set(jnp.inf)), ValueError, "A contains NaN"),
        (dict(damp=-0.1), ValueError, "damp must be finite and >= 0"),
        (dict(damp=float("nan")), ValueError, "damp"),
        (dict(x0=jnp.zeros(4)), ValueError, "x0 has 4 entries"),
        (dict(b=B.astype(jnp.float16)), TypeError, r"b has dtype float16.*b\.astype\(jnp\.float32\)"),
        (dict(A=A.astype(jnp.bfloat16)), TypeError, r"A has dtype bfloat16.*A\.astype\(jnp\.float32\)"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    args = dict(A=A, b=B)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        lstsq(args.pop("A"), args.pop("b"), **args)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(atol=-1e-6), ValueError, "atol must be finite and >= 0, got -1e-06"),
        (dict(btol=float("nan")), ValueError, "btol must be finite and >= 0, got nan"),
        (dict(atol=float("inf")), ValueError, "atol must be finite and >= 0, got inf"),
        (dict(atol=jnp.asarray(1e-6)), TypeError, "atol must be a Python float"),
        (dict(btol="1e-6"), TypeError, "btol must be a Python float"),
        (dict(conlim=-1.0), ValueError, "conlim must be >= 0"),
        (dict(conlim=float("nan")), ValueError, "conlim must be >= 0.*got nan"),
        (dict(maxiter=2**31), ValueError, "maxiter must be None or an integer in"),
        (dict(maxiter=-1), ValueError, "maxiter must be None or an integer in"),
        (dict(maxiter=10.0), TypeError, "maxiter must be None or an integer, got float"),
        (dict(maxiter=float("inf")), TypeError, "maxiter must be None or an integer, got float"),
        (dict(maxiter=True), TypeError, "maxiter must be None or an integer, got bool"),
        (dict(btol=np.float64("nan")), ValueError, "btol must be finite and >= 0"),
        (dict(conlim=-1), ValueError, "conlim must be >= 0"),
        (dict(maxiter=np.int64(2**31 - 1)), ValueError, "maxiter must be None or an integer in"),
        (dict(maxiter=np.float64(5)), TypeError, "maxiter must be None or an integer"),
    ],
)
def test_bad_solver_options_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        SolverOptions(**kwargs)


def test_options_must_be_solver_options():
    with pytest.raises(TypeError, match="options and backward must be SolverOptions or None, got dict"):
        lstsq(A, B, options=dict(atol=1e-6))


def test_options_accept_numpy_scalars_and_the_no_limit_conlims():
    """NumPy scalars become Python numbers (equal and hashed alike); conlim 0 and inf mean no limit."""
    options = SolverOptions(atol=np.float32(0.5), btol=0, conlim=np.float64(1e8), maxiter=np.int64(7))
    assert options == SolverOptions(atol=0.5, btol=0.0, conlim=1e8, maxiter=7)
    assert hash(options) == hash(SolverOptions(atol=0.5, btol=0.0, conlim=1e8, maxiter=7))
    assert type(options.maxiter) is int and type(options.atol) is float
    for conlim in (0, float("inf")):
        _, info = lstsq(A, B, options=SolverOptions(conlim=conlim, maxiter=np.int64(2)))
        assert int(info.iterations) == 2


def test_traced_tolerances_are_refused_where_options_are_static():
    with pytest.raises(TypeError, match="atol is traced: tolerances are static Python floats"):
        jax.jit(lambda t: hash(SolverOptions(atol=t)))(1e-6)
    with pytest.raises(TypeError, match="btol is traced: tolerances are static Python floats"):
        jax.jit(lambda t: lstsq(A, B, options=SolverOptions(btol=t))[0])(1e-6)
    with pytest.raises(TypeError, match="conlim is traced"):
        jax.jit(lambda t: lstsq(A, B, options=SolverOptions(conlim=t))[0])(1e8)
    with pytest.raises(TypeError, match="maxiter is traced"):
        jax.jit(lambda k: lstsq(A, B, options=SolverOptions(maxiter=k))[0])(5)


def test_function_operator_errors():
    with pytest.raises(ValueError, match="pass x0"):
        lstsq(lambda v: A @ v, B)
    with pytest.raises(ValueError, match="not a linear function"):
        lstsq(lambda v: jnp.tanh(A @ v), B, x0=jnp.zeros(3))
    with pytest.raises(ValueError, match="offset"):
        lstsq(lambda v: A @ v + 1.0, B, x0=jnp.zeros(3))
    with pytest.raises(ValueError, match="offset"):
        lstsq(lambda v: A @ jnp.maximum(v, 0.0), B, x0=jnp.zeros(3))  # piecewise linear
    with pytest.raises(ValueError, match="does not match the shape of b"):
        lstsq(lambda v: A[:5] @ v, B, x0=jnp.zeros(3))
    with pytest.raises(TypeError, match="dtype"):
        lstsq(lambda v: (A @ v).astype(jnp.float32), B, x0=jnp.zeros(3))


def test_nan_met_inside_jit_stops_with_its_own_code():
    """An operator that produces NaN only at run time: istop 8, a finite x, no hang."""

    @jax.jit
    def solve(scale, b):
        return lstsq(lambda v: A @ v * scale, b, x0=jnp.zeros(3), options=SolverOptions(maxiter=100))

    x, info = solve(jnp.nan, B)
    assert int(info.istop) == 8 and info.reason == STOP_REASONS[8]
    assert np.all(np.isfinite(np.asarray(x)))
    x, info = solve(1.0, B.at[0].set(jnp.inf))
    assert int(info.istop) == 8 and np.all(np.isfinite(np.asarray(x)))


def test_negative_damp_under_jit_solves_the_same_problem():
    """Under tracing damp cannot be checked; the problem depends on damp^2, so -d solves as d."""
    f = jax.jit(lambda d: lstsq(A, B, damp=d, options=SolverOptions(atol=1e-12, btol=1e-12))[0])
    np.testing.assert_allclose(np.asarray(f(-0.5)), np.asarray(f(0.5)), atol=1e-12)


def test_function_operator_over_constants_works_under_jit():
    """Inside jit a function closing over concrete arrays still gives traced outputs: no check trips."""
    M = np.asarray(A)
    x = jax.jit(lambda b: lstsq(lambda v: M @ v, b, domain=jax.ShapeDtypeStruct((3,), jnp.float64),
                                options=SolverOptions(atol=1e-12, btol=1e-12))[0])(B)
    np.testing.assert_allclose(np.asarray(x), np.linalg.lstsq(M, np.asarray(B), rcond=None)[0], atol=1e-10)


def test_affine_operator_under_jit_is_reported():
    """A v + c passes jax.linear_transpose; under jit the numerical probe cannot run, so A(0) = c != 0 is
    checked at run time: istop 10 (before: istop 2 and an answer 0.59 off)."""
    solve = jax.jit(lambda A, b, c: lstsq(lambda v: A @ v + c, b, domain=jnp.zeros(3))[1].istop)
    assert int(solve(A, B, 1.0)) == 10
    assert int(solve(A, B, 0.0)) in (1, 2)
    assert STOP_REASONS[10].startswith("A is not linear")


@pytest.mark.parametrize("dtype,scale", [(jnp.float64, 1e-160), (jnp.float64, 1e160), (jnp.float32, 1e-20),
                                         (jnp.float32, 1e20)])
def test_extreme_scales_are_solved(dtype, scale):
    """A full-rank A scaled by 1e-160 (float64) or 1e-20 (float32): norms of A^T b underflowed and the
    solve returned x = 0 with istop 0. Now A is rescaled by a power of two (exact) and x is right."""
    rng = np.random.default_rng(3)
    A_, b_ = rng.standard_normal((30, 8)), rng.standard_normal(30)
    x, info = lstsq(jnp.asarray(A_ * scale, dtype), jnp.asarray(b_, dtype), options=SolverOptions(atol=1e-6, btol=1e-6))
    reference = np.linalg.lstsq(A_, b_, rcond=None)[0] / scale
    assert int(info.istop) in (1, 2)
    assert np.linalg.norm(np.asarray(x, np.float64) - reference) <= 1e-5 * np.linalg.norm(reference)
    assert np.isclose(float(info.norma), np.linalg.norm(A_) * scale, rtol=0.5)
    if dtype == jnp.float64:  # the backward solve's right-hand side is then of order 1 / scale
        grad_b = jax.grad(lambda b: jnp.sum(lstsq(jnp.asarray(A_ * scale), b, options=SolverOptions(atol=1e-10, btol=1e-10))[0]))(
            jnp.asarray(b_))
        expected = np.linalg.pinv(A_).T @ np.ones(8)
        assert np.linalg.norm(np.asarray(grad_b) * scale - expected) <= 1e-6 * np.linalg.norm(expected)


def test_gradients_vmapped_over_damp_values(rng):
    """damp is data: vmap over damp values (small, moderate, zero) gives the gradients of each solve."""
    A_, b_ = jnp.asarray(rng.standard_normal((25, 10))), jnp.asarray(rng.standard_normal(25))
    grad = jax.grad(lambda b, d: jnp.sum(lstsq(A_, b, damp=d, options=SolverOptions(atol=1e-12, btol=1e-12))[0] ** 2), argnums=(0, 1))
    damps = jnp.asarray([0.0, 1e-8, 0.3, 5.0])
    batched = jax.vmap(grad, in_axes=(None, 0))(b_, damps)
    for i, d in enumerate(damps):
        one = grad(b_, d)
        np.testing.assert_allclose(np.asarray(batched[0][i]), np.asarray(one[0]), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(float(batched[1][i]), float(one[1]), rtol=1e-8, atol=1e-14)
