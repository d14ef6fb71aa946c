"""Reliability: bad input raises a clear error before tracing; trouble met inside jit is reported."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsqlab import STOP_REASONS, lstsq

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
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    args = dict(A=A, b=B)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        lstsq(args.pop("A"), args.pop("b"), **args)


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
        return lstsq(lambda v: A @ v * scale, b, x0=jnp.zeros(3), maxiter=100)

    x, info = solve(jnp.nan, B)
    assert int(info.istop) == 8 and info.reason == STOP_REASONS[8]
    assert np.all(np.isfinite(np.asarray(x)))
    x, info = solve(1.0, B.at[0].set(jnp.inf))
    assert int(info.istop) == 8 and np.all(np.isfinite(np.asarray(x)))


def test_negative_damp_under_jit_solves_the_same_problem():
    """Under tracing damp cannot be checked; the problem depends on damp^2, so -d solves as d."""
    f = jax.jit(lambda d: lstsq(A, B, damp=d, atol=1e-12, btol=1e-12)[0])
    np.testing.assert_allclose(np.asarray(f(-0.5)), np.asarray(f(0.5)), atol=1e-12)


def test_sharded_arrays_on_four_cpu_devices(tmp_path):
    """Rows of A and b sharded over 4 (virtual) CPU devices: same solution and gradient."""
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from lsqlab import lstsq
        assert len(jax.devices()) == 4
        rng = np.random.default_rng(0)
        A, b = jnp.asarray(rng.standard_normal((400, 50))), jnp.asarray(rng.standard_normal(400))
        mesh = Mesh(np.array(jax.devices()), ("rows",))
        As = jax.device_put(A, NamedSharding(mesh, P("rows", None)))
        bs = jax.device_put(b, NamedSharding(mesh, P("rows")))
        loss = lambda A, b: jnp.sum(lstsq(A, b, atol=1e-12, btol=1e-12, maxiter=500)[0] ** 2)
        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        (v1, (gA1, gb1)), (v2, (gA2, gb2)) = value_and_grad(As, bs), value_and_grad(A, b)
        assert len(gA1.sharding.device_set) == 4, gA1.sharding
        np.testing.assert_allclose(v1, v2, rtol=1e-10)
        np.testing.assert_allclose(gA1, gA2, atol=1e-9)
        np.testing.assert_allclose(gb1, gb2, atol=1e-9)
        print("sharded ok")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded ok" in result.stdout


def test_function_operator_over_constants_works_under_jit():
    """Inside jit a function closing over concrete arrays still gives traced outputs: no check trips."""
    M = np.asarray(A)
    x = jax.jit(lambda b: lstsq(lambda v: M @ v, b, domain=jax.ShapeDtypeStruct((3,), jnp.float64),
                                atol=1e-12, btol=1e-12)[0])(B)
    np.testing.assert_allclose(np.asarray(x), np.linalg.lstsq(M, np.asarray(B), rcond=None)[0], atol=1e-10)
