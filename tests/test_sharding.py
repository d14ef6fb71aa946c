"""Sharded inputs on 4 simulated CPU devices (each check runs in a subprocess, since XLA fixes the
device count at start-up): the same answers as unsharded, outputs that keep a sensible sharding, and
no operation that gathers a sharded matrix or parameter, read from the compiled programs (their
collectives, lsqlab.sharding, and ``memory_analysis()``)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
assert len(jax.devices()) == 4
mesh = Mesh(np.array(jax.devices()), ("rows",))
ROWS, VECTOR = NamedSharding(mesh, P("rows", None)), NamedSharding(mesh, P("rows"))
REPLICATED = NamedSharding(mesh, P())
from lsqlab.sharding import collectives, largest_transfer

def gathers(compiled):
    '''The program's all-gathers, e.g. 'all-gather f64[12000,400]'.'''
    return [key for key in collectives(compiled) if key.startswith("all-gather")]
"""


def run_on_four_devices(script: str) -> str:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_row_sharded_solve_matches_and_streams_no_gathered_copy_of_a():
    """Rows of A and b over 4 devices: the same value and gradients as unsharded, dA sharded like A.
    Above the CPU streaming threshold (operators.STREAM_BYTES) a 12000 x 400 A (36.6 MiB, 9.2 MiB per
    device) keeps its shards: before, the streamed products gathered A onto every device (an
    all-gather of f64[12000,400] and 46 MiB of temporaries per device for a solve; for value_and_grad
    A reshuffled by all-to-all and 19.5 MiB); now no collective moves more than a vector, and the
    temporaries of a solve and of value_and_grad stay below a tenth of the shard.
    On one device the same solve still streams A in row blocks."""
    out = run_on_four_devices("""
        from lsqlab import SolverOptions, lstsq, operators
        rng = np.random.default_rng(0)
        A, b = jnp.asarray(rng.standard_normal((400, 50))), jnp.asarray(rng.standard_normal(400))
        loss = lambda A, b: jnp.sum(lstsq(A, b, options=SolverOptions(atol=1e-12, btol=1e-12, maxiter=500))[0] ** 2)
        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        v1, (gA1, gb1) = value_and_grad(jax.device_put(A, ROWS), jax.device_put(b, VECTOR))
        v2, (gA2, gb2) = value_and_grad(A, b)
        assert gA1.sharding.spec[0] == "rows" and len(gA1.sharding.device_set) == 4, gA1.sharding
        np.testing.assert_allclose(v1, v2, rtol=1e-10)
        np.testing.assert_allclose(gA1, gA2, atol=1e-9)
        np.testing.assert_allclose(gb1, gb2, atol=1e-9)

        m, n = 12000, 400
        assert m * n * 8 > operators.STREAM_BYTES
        A = jax.ShapeDtypeStruct((m, n), jnp.float64, sharding=ROWS)
        b = jax.ShapeDtypeStruct((m,), jnp.float64, sharding=VECTOR)
        shard_bytes = m * n * 8 // 4
        solve = lambda A, b: jnp.sum(lstsq(A, b, options=SolverOptions(atol=1e-10, btol=1e-10, maxiter=50))[0] ** 2)
        for f in (solve, jax.value_and_grad(solve, argnums=(0, 1))):
            compiled = jax.jit(f).lower(A, b).compile()
            temp = compiled.memory_analysis().temp_size_in_bytes
            print(f"temporaries {temp / 2**20:.2f} MiB per device; collectives {collectives(compiled)}")
            assert largest_transfer(compiled) <= m, collectives(compiled)  # vectors at most, never A
            assert temp < 0.1 * shard_bytes, temp
        block_rows = operators.BLOCK_BYTES // (n * 8)
        one_device = jax.jit(solve).lower(jax.ShapeDtypeStruct((m, n), jnp.float64),
                                          jax.ShapeDtypeStruct((m,), jnp.float64))
        assert f"f64[{block_rows},{n}]" in one_device.compile().as_text()  # the streamed row blocks
        print("sharded solve ok")
        """)
    assert "sharded solve ok" in out, out


def test_preconditioners_and_the_null_space_method_keep_shards_under_jit():
    """sketch_preconditioner (rank-deficient A: its rank is data under jit) and column_scaling under
    jit on a row-sharded A equal their eager values with no all-gather of A, and give replicated
    preconditioners; a sparsity Selection's c under jit equals the masked entries and exchanges only
    the per-row counts; a transform step on row-sharded weights gathers nothing and keeps the weights'
    sharding. (Before: the rank was read as a Python int, so sketch_preconditioner could not be
    jitted.)"""
    out = run_on_four_devices("""
        import optax
        from lsqlab import constraints, nullspace
        from lsqlab.preconditioners import column_scaling, sketch_preconditioner
        rng = np.random.default_rng(1)
        u, _ = np.linalg.qr(rng.standard_normal((400, 30)))
        A = jax.device_put(u @ np.diag(np.logspace(0, -4, 30)) @ rng.standard_normal((30, 40)), ROWS)  # rank 30 of 40
        key = jax.random.key(0)
        eager = sketch_preconditioner(A, key, rcond=1e-10).matrix
        build = jax.jit(lambda A: sketch_preconditioner(A, key, rcond=1e-10).matrix)
        jitted = build(A)
        assert eager.shape == (40, 30) and jitted.shape == (40, 40)
        np.testing.assert_allclose(jitted[:, :30], eager, atol=1e-12 * float(jnp.max(jnp.abs(eager))))
        assert float(jnp.max(jnp.abs(jitted[:, 30:]))) == 0
        assert jitted.sharding.is_fully_replicated, jitted.sharding
        assert largest_transfer(build.lower(A).compile()) == 160 * 40  # one all-reduce of the s x n sketch
        scale = jax.jit(lambda A: column_scaling(A, damp=0.1).scale)
        np.testing.assert_allclose(scale(A), column_scaling(A, damp=0.1).scale, rtol=1e-14)
        assert not gathers(scale.lower(A).compile())

        w = rng.standard_normal((256, 32))
        mask = rng.random((256, 32)) < 0.3
        params = {"w": jax.device_put(w, ROWS), "bias": jax.device_put(jnp.zeros(32), REPLICATED)}
        masks = {"w": jax.device_put(mask, ROWS), "bias": jax.device_put(jnp.arange(32) < 3, REPLICATED)}
        selection = constraints.sparsity(masks)
        c = jax.jit(selection)
        np.testing.assert_array_equal(c(params), np.concatenate([np.zeros(3), w[mask]]))  # leaves: bias, w
        assert gathers(c.lower(params).compile()) == ["all-gather s32[256]"]  # the per-row counts only
        tx = nullspace.transform(optax.adam(0.01), selection, gamma=1.0)
        loss = lambda p: jnp.sum(jnp.sin(p["w"]) ** 2) + jnp.sum((p["bias"] - 1) ** 2)
        def step(p, state):
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            return optax.apply_updates(p, updates), state
        step = jax.jit(step)
        assert not gathers(step.lower(params, tx.init(params)).compile())
        trained, _ = step(params, tx.init(params))
        assert trained["w"].sharding.spec[0] == "rows", trained["w"].sharding
        assert float(jnp.max(jnp.abs(jnp.where(masks["w"], trained["w"], 0)))) == 0
        print("sharded preconditioners and null space ok")
        """)
    assert "sharded preconditioners and null space ok" in out, out


def test_generic_constraint_solvers_keep_row_sharded_weights():
    """A generic constraint (m = 4 nonlinear functionals) on row-sharded weights plus a replicated
    bias: project (LSMR) and transform steps with LSMR, GramCG and GramDense give the unsharded
    answers, keep the weights' sharding, and exchange no more than a row of W (here: m-vectors,
    m x m Gram sums and scalars). Before, LSMR ran on the parameters raveled into one vector, and
    concatenating the replicated bias with the sharded W made XLA all-gather W (f64[32768]) at
    every product; GramDense concatenated J's rows, which XLA then reshuffled between devices
    (all-to-all of 8192 entries per device)."""
    out = run_on_four_devices("""
        import optax
        from lsqlab import multipliers, nullspace
        rng = np.random.default_rng(2)
        rows, cols, m = 256, 128, 4
        probes, q = jnp.asarray(rng.standard_normal((m, rows))), jnp.asarray(rng.standard_normal(cols))
        constraint = lambda p: probes @ (jnp.tanh(p["w"]) @ q) + probes[:, :cols] @ p["bias"] - 1
        plain = {"w": jnp.asarray(rng.standard_normal((rows, cols))), "bias": jnp.asarray(rng.standard_normal(cols))}
        sharded = {"w": jax.device_put(plain["w"], ROWS), "bias": jax.device_put(plain["bias"], REPLICATED)}
        grads = lambda p: jax.tree.map(lambda leaf: 0.1 * jnp.cos(leaf), p)
        project = jax.jit(lambda p: nullspace.project(constraint, p, grads(p), gamma=0.5)[0])
        steps = {"project": project}
        for name, gram in (("lsmr", None), ("cg", multipliers.GramCG(maxiter=20, rtol=1e-12)),
                           ("dense", multipliers.GramDense())):
            tx = nullspace.transform(optax.adam(0.01), constraint, gamma=0.5, gram=gram)
            steps[name] = jax.jit(lambda p, tx=tx: tx.update(grads(p), tx.init(p), p)[0])
        for name, step in steps.items():
            compiled = step.lower(sharded).compile()
            print(name, collectives(compiled))
            assert largest_transfer(compiled) <= cols, (name, collectives(compiled))  # never W or J's rows
            d, expected = step(sharded), step(plain)
            assert d["w"].sharding.spec[0] == "rows", (name, d["w"].sharding)
            for leaf, reference in zip(jax.tree.leaves(d), jax.tree.leaves(expected)):
                np.testing.assert_allclose(leaf, reference, rtol=1e-9, atol=1e-12)
        print("generic constraint keeps shards")
        """)
    assert "generic constraint keeps shards" in out, out
