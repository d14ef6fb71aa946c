"""One process of tests/test_distributed.py, and the computations both sides run.

``python distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT``: joins a ``jax.distributed`` CPU
cluster on 127.0.0.1:PORT (gloo collectives, 2 CPU devices per process), shards the problem of
:func:`problem` by rows over all the cluster's devices and runs :func:`solve_and_differentiate` and
:func:`train` on it (eagerly and under ``jit``); process 0 writes the results to OUT (an .npz). The
test runs the same functions on unsharded arrays in one process and compares.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

SOLVE = dict(atol=1e-12, btol=1e-12, maxiter=500)  # SolverOptions fields (lsqlab is imported after setup)
STEPS = 4


def problem() -> dict[str, np.ndarray]:
    """A tall least-squares problem (A 96 x 12, b) and a small linear regression (X, Y) whose 40 x 6
    weights w carry a sparsity mask: seeded, identical in every process."""
    rng = np.random.default_rng(18)
    return {"A": rng.standard_normal((96, 12)), "b": rng.standard_normal(96),
            "X": rng.standard_normal((24, 40)), "Y": rng.standard_normal((24, 6)),
            "w": rng.standard_normal((40, 6)), "mask": rng.random((40, 6)) < 0.4}


def solve_and_differentiate(A: Any, b: Any) -> dict[str, Any]:
    """x = LstSq(A, b) eagerly (its checks read A's finiteness and largest entry back from the
    devices), and value and gradient of ||x||^2 in A and b under jit."""
    import jax
    import jax.numpy as jnp

    from lsqlab import SolverOptions, lstsq

    options = SolverOptions(**SOLVE)
    x, info = lstsq(A, b, options=options)
    loss = lambda A, b: jnp.sum(lstsq(A, b, options=options)[0] ** 2)  # noqa: E731
    value, (dA, db) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(A, b)
    return {"x": x, "istop": info.istop, "value": value, "dA": dA, "db": db}


def preconditioned(A: Any) -> dict[str, Any]:
    """The rank-revealing sketch preconditioner P, built under jit (its rank is data there)."""
    import jax

    from lsqlab.preconditioners import sketch_preconditioner

    return {"P": jax.jit(sketch_preconditioner)(A, jax.random.key(0)).matrix}


def train(w: Any, bias: Any, mask: Any, X: Any, Y: Any) -> dict[str, Any]:
    """STEPS null-space Adam steps on ||X w + bias - Y||^2 with w = 0 on ``mask`` (a sparsity
    constraint, projected in closed form), under jit; plus c(w) and one eager projection."""
    import jax
    import jax.numpy as jnp
    import optax

    from lsqlab import constraints, nullspace

    params, masks = {"w": w, "bias": bias}, {"w": mask, "bias": jnp.zeros(bias.shape, bool)}
    selection = constraints.sparsity(masks)
    tx = nullspace.transform(optax.adam(0.05), selection, gamma=1.0)
    loss = lambda p: jnp.sum((X @ p["w"] + p["bias"] - Y) ** 2)  # noqa: E731

    @jax.jit
    def step(p: Any, state: Any) -> tuple[Any, Any]:
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return optax.apply_updates(p, updates), state

    state = tx.init(params)
    projected, _ = nullspace.project(selection, params, jax.grad(loss)(params), gamma=1.0)
    c = selection(params)
    for _ in range(STEPS):
        params, state = step(params, state)
    return {"w_trained": params["w"], "bias_trained": params["bias"], "c": c, "projected_w": projected["w"]}


def main(process_id: int, num_processes: int, port: int, out: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id,
                               initialization_timeout=60)
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()), ("rows",))
    assert jax.device_count() == 2 * num_processes and jax.local_device_count() == 2, jax.devices()
    data = problem()

    def global_array(value: np.ndarray, spec: PartitionSpec) -> jax.Array:
        sharding = NamedSharding(mesh, spec)
        array = jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
        assert not array.is_fully_addressable  # spread over the processes
        return array

    rows = PartitionSpec("rows")
    A, b = global_array(data["A"], rows), global_array(data["b"], rows)
    w, mask = global_array(data["w"], rows), global_array(data["mask"], rows)
    bias = global_array(np.zeros(data["Y"].shape[1]), PartitionSpec())
    X, Y = global_array(data["X"], PartitionSpec()), global_array(data["Y"], PartitionSpec())
    results = {**solve_and_differentiate(A, b), **preconditioned(A), **train(w, bias, mask, X, Y)}
    for name in ("dA", "w_trained", "projected_w"):  # gradients and weights keep the row sharding
        assert results[name].sharding.spec[0] == "rows", (name, results[name].sharding)
    gathered = {name: np.asarray(multihost_utils.process_allgather(value, tiled=True))
                for name, value in results.items()}
    if process_id == 0:
        np.savez(out, **gathered)
    print(f"process {process_id}: done", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
