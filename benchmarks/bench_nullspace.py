"""Cost of one null-space step against one plain optax step, for the same model and batch.

Model: an MLP 64 -> h -> h -> 10 (tanh) on 8x8 inputs, trained with Adam on a squared loss over a
batch of 128; h is chosen for the parameter count. Constraints:
  sparsity     -- half of the hidden-layer weights must vanish (m ~ p/2; J is a selection);
  equivariance -- invariance of the outputs under the three non-trivial C4 rotations of the input
                  image at 16 collocation images (m = 3 * 16 * 10 = 480).
Both are run with the default order "both" (two solves on J per step) and with "after" (one).
Times are medians over repeated, compiled (jax.jit) steps, float32, on the CPU; the plain and the
constrained steps of one size alternate, so that outside load affects them alike.

    python benchmarks/bench_nullspace.py            # p = 1e4, 1e5, 1e6
    python benchmarks/bench_nullspace.py --quick    # p = 1e3, 1e4
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import constraints, nullspace

BATCH, COLLOCATION, OUTPUTS = 128, 16, 10


def hidden_width(num_params: int) -> int:
    """h with 64 h + h^2 + 10 h + 2 h + 10 ~ num_params (the MLP's parameter count)."""
    return max(2, int(round((-76 + np.sqrt(76**2 + 4 * (num_params - 10))) / 2)))


def init_mlp(key: jax.Array, h: int) -> dict:
    sizes = [(64, h), (h, h), (h, OUTPUTS)]
    keys = jax.random.split(key, len(sizes))
    return {
        f"layer{i}": {"w": jax.random.normal(k, s) / np.sqrt(s[0]), "b": jnp.zeros(s[1])}
        for i, (k, s) in enumerate(zip(keys, sizes))
    }


def mlp(params: dict, images: jax.Array) -> jax.Array:
    """(k, 8, 8) -> (k, 10)."""
    x = images.reshape(images.shape[0], -1)
    for name in ("layer0", "layer1"):
        x = jnp.tanh(x @ params[name]["w"] + params[name]["b"])
    return x @ params["layer2"]["w"] + params["layer2"]["b"]


def loss(params: dict, images: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean((mlp(params, images) - targets) ** 2)


def half_hidden_mask(params: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: (rng.random(leaf.shape) < 0.5) & ("layer1" in str(path) and leaf.ndim == 2),
        params,
    )


def rotation_invariance() -> nullspace.Constraint:
    rotations = [lambda xs, k=k: jnp.rot90(xs, k, axes=(1, 2)) for k in (1, 2, 3)]
    return constraints.equivariance(mlp, rotations, [lambda ys: ys] * 3)


def interleaved_median_ms(runs: dict, repeats: int) -> dict:
    """Median wall time (ms) of each compiled ``step(*state)``; the steps alternate within each repeat,
    so that load from other processes affects them alike."""
    states = {name: jax.block_until_ready(step(*state)) for name, (step, state) in runs.items()}  # compile
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (step, _) in runs.items():
            start = time.perf_counter()
            states[name] = jax.block_until_ready(step(*states[name]))
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def plain_step(optimiser):
    @jax.jit
    def step(params, opt_state, images, targets):
        updates, opt_state = optimiser.update(jax.grad(loss)(params, images, targets), opt_state, params)
        return optax.apply_updates(params, updates), opt_state, images, targets

    return step


def constrained_step(tx, constraint_args):
    @jax.jit
    def step(params, opt_state, images, targets):
        grads = jax.grad(loss)(params, images, targets)
        updates, opt_state = tx.update(grads, opt_state, params, **constraint_args)
        return optax.apply_updates(params, updates), opt_state, images, targets

    return step


def run(num_params: int, repeats: int) -> list[dict]:
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params = init_mlp(keys[0], hidden_width(num_params))
    p = sum(leaf.size for leaf in jax.tree.leaves(params))
    images = jax.random.normal(keys[1], (BATCH, 8, 8))
    targets = jax.random.normal(keys[2], (BATCH, OUTPUTS))
    collocation = jax.random.normal(keys[3], (COLLOCATION, 8, 8))
    adam = optax.adam(1e-3)
    runs = {"plain": (plain_step(adam), (params, adam.init(params), images, targets))}
    cases = [
        ("sparsity", constraints.sparsity(half_hidden_mask(params)), {}),
        ("equivariance", rotation_invariance(), {"inputs": collocation}),
    ]
    rows = []
    for name, constraint, args in cases:
        m = jax.eval_shape(lambda prm: constraint(prm, **args), params).shape[0]
        for order in ("both", "after"):
            tx = nullspace.transform(adam, constraint, gamma=0.5, order=order)
            step, state = constrained_step(tx, args), (params, tx.init(params), images, targets)
            runs[(name, order)] = (step, state)
            info = step(*state)[1].info
            rows.append(dict(
                constraint=name, order=order, p=p, m=m, iterations=int(info.iterations), istop=int(info.istop),
                lin_violation=float(info.linearized_violation) / max(float(info.violation), 1e-30),
            ))
    times = interleaved_median_ms(runs, repeats)
    for row in rows:
        row.update(plain_ms=times["plain"], constrained_ms=times[(row["constraint"], row["order"])])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (1e3, 1e4)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    sizes = [10**3, 10**4] if args.quick else [10**4, 10**5, 10**6]
    repeats = args.repeats or (5 if args.quick else 11)
    cpu = platform.processor() or platform.machine()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cores, {cpu}")
    header = (
        f"| constraint | order | p | m | plain step (ms) | constrained step (ms) | ratio | LSMR iterations | istop |"
        f" ||J d + gamma c|| / ||c|| |"
    )
    print(header)
    print("|" + "---|" * 10)
    for size in sizes:
        for r in run(size, repeats):
            print(
                f"| {r['constraint']} | {r['order']} | {r['p']:,} | {r['m']:,} | {r['plain_ms']:.2f} | "
                f"{r['constrained_ms']:.2f} | {r['constrained_ms'] / r['plain_ms']:.1f} | {r['iterations']} | "
                f"{r['istop']} | {r['lin_violation']:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
