"""What a null-space step costs against a plain optax Adam step, where the time goes, and what each
solver choice does to the constraint and the accuracy over a whole training run.

Four parts, each a table of ratios measured in one process (float32 unless said, on the CPU):

  sparsity      MLP 64 -> h -> h -> 10 (tanh, batch 128) with half of the hidden-to-hidden weights
                masked (m ~ p/4), p = 1e4, 1e5, 1e6: plain Adam; the null-space step of the
                Selection constraint (closed form, order "both"); the same c through the generic
                path (LSMR on J, maxiter 10); the hand-written masked step (hard_mask). One compiled
                step each, interleaved, median of repeats; ||theta_S|| after a step from theta_S != 0.
  pairs         the equivariance application's constraint (C4 invariance of the digits MLP on 32
                collocation images, m = 960): cost of one JVP + VJP pair, of one LSMR iteration and of
                one Gram-form CG iteration (slopes over 10 and 30 iterations), and of a plain step.
  equivariance  the application's full training run (lsqlab.applications.equivariance.run on seed 0
                of its full Budget, the shared training loop) for plain Adam and each null-space
                solver: ms/step (the loop's median over chunks), ratio, solver iterations per step,
                ||c|| and accuracies at the end.
  scores        the conservative-score application (float64, 300 steps, 2-D data, m = 32 pairs
                redrawn each step): plain, LSMR (tolerance 1e-4) and the dense Gram form; NAsym on
                held-out pairs.

    python benchmarks/bench_nullspace.py            # everything (~5 minutes here)
    python benchmarks/bench_nullspace.py --quick    # small sizes, short runs (~1 minute)
    python benchmarks/bench_nullspace.py --parts sparsity pairs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import constraints, multipliers, nullspace
from lsqlab.applications import equivariance as eq
from lsqlab.applications import mlp
from lsqlab.applications.sparsity import hard_mask
from lsqlab.solver import SolverOptions

BATCH = 128
PARTS = ("sparsity", "pairs", "equivariance", "scores")
VARIANTS = {  # the equivariance trade-off: name -> Budget.gram (None: LSMR from zero, Budget.solver)
    "LSMR from 0, tol 1e-4, <= 20 its/solve": None,
    "Gram CG warm, 1 it/solve": multipliers.GramCG(1e-2, 1),
    "Gram CG warm, 3 its/solve": multipliers.GramCG(1e-2, 3),
    "Gram CG cold, 3 its/solve": multipliers.GramCG(1e-2, 3, warm_start=False),
    "Gram CG warm, 10 its/solve": multipliers.GramCG(1e-2, 10),
    "Gram CG warm + Nystrom 32, 1 it/solve": multipliers.GramCG(1e-2, 1, rank=32),
    "Gram CG warm + Nystrom 64, 2 its/solve": multipliers.GramCG(1e-2, 2, rank=64),
    "Gram CG warm + Nystrom 128, 3 its/solve (default)": eq.GRAM,
    "Gram CG warm + Nystrom 128, 3 its/solve, every 300": eq.GRAM._replace(refresh_every=300),
}


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


def hidden_width(num_params: int) -> int:
    """h with 64 h + h^2 + 10 h + 2 h + 10 ~ num_params."""
    return max(2, int(round((-76 + np.sqrt(76**2 + 4 * (num_params - 10))) / 2)))


def sparsity_rows(num_params: int, repeats: int) -> list[dict]:
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    h = hidden_width(num_params)
    params = mlp.init(keys[0], (64, h, h, 10))
    images, targets = jax.random.normal(keys[1], (BATCH, 64)), jax.random.normal(keys[2], (BATCH, 10))
    rng = np.random.default_rng(0)
    mask = [{"w": np.zeros(layer["w"].shape, bool) if i != 1 else rng.random(layer["w"].shape) < 0.5,
             "b": np.zeros(layer["b"].shape, bool)} for i, layer in enumerate(params)]
    selection = constraints.sparsity(mask)
    loss = lambda p, x, y: jnp.mean((mlp.apply(p, x) - y) ** 2)  # noqa: E731
    adam = optax.adam(1e-3)

    def step_of(tx):
        @jax.jit
        def step(theta, state, x, y):
            updates, state = tx.update(jax.grad(loss)(theta, x, y), state, theta)
            return optax.apply_updates(theta, updates), state, x, y

        return step, (params, tx.init(params), images, targets)

    optimisers = {
        "plain Adam": adam,
        "Selection, closed form": nullspace.transform(adam, selection, gamma=1.0),
        "same c, generic LSMR": nullspace.transform(adam, lambda p: selection(p), gamma=1.0,
                                                    options=replace(nullspace.DEFAULT_OPTIONS, maxiter=10)),
        "hard_mask (hand-written)": hard_mask(adam, mask),
    }
    runs = {name: step_of(tx) for name, tx in optimisers.items()}
    times = interleaved_median_ms(runs, repeats)
    rows = []
    for name, (step, state) in runs.items():
        after = step(*state)[0]
        rows.append(dict(p=mlp.count(params), m=int(selection(params).shape[0]), method=name, ms=times[name],
                         ratio=times[name] / times["plain Adam"],
                         residual=float(jnp.linalg.norm(selection(after))) / float(jnp.linalg.norm(selection(params)))))
    return rows


def slope_ms(fn, arg, small: int, large: int, repeats: int) -> float:
    """(t(large) - t(small)) / (large - small): the cost of one more iteration of ``fn(arg, k)``."""
    compiled = {k: jax.jit(lambda a, k=k: fn(a, k)) for k in (small, large)}
    for f in compiled.values():
        jax.block_until_ready(f(arg))
    times = {k: [] for k in compiled}
    for _ in range(repeats):
        for k, f in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(f(arg))
            times[k].append(time.perf_counter() - start)
    return 1e3 * (statistics.median(times[large]) - statistics.median(times[small])) / (large - small)


def pair_rows(repeats: int) -> list[dict]:
    budget = eq.Budget()
    prepared = eq.prepare(0, budget)
    params = mlp.init(jax.random.key(0), budget.sizes, jnp.float32)
    constraint = eq.invariance_constraint()
    points = prepared.collocation
    images, labels = prepared.x_train[:budget.batch], prepared.y_train[:budget.batch]
    m = eq.num_constraints(budget.collocation)

    def linearized(theta):
        c, jvp = jax.linearize(lambda t: constraint(t, inputs=points), theta)
        transpose = jax.linear_transpose(jvp, theta)
        return c, jvp, lambda w: transpose(w)[0]

    def pairs(theta, k):
        c, jvp, vjp = linearized(theta)
        return jax.lax.fori_loop(0, k, lambda _, w: jvp(vjp(w)) / jnp.linalg.norm(w), c)

    def lsmr_iterations(theta, k):
        grads = jax.tree.map(jnp.ones_like, theta)
        options = SolverOptions(atol=0.0, btol=0.0, conlim=1e12, maxiter=k)
        return nullspace.project(lambda t: constraint(t, inputs=points), theta, grads, gamma=0.5, options=options)[0]

    def cg_iterations(theta, k):
        c, jvp, vjp = linearized(theta)
        options = multipliers.GramCG(rtol=0.0, maxiter=k)
        return multipliers.solve(jvp, vjp, c, jnp.zeros(m), multipliers.identity(m, c.dtype), options).z

    def plain_steps(theta, k):
        step = lambda _, t: jax.tree.map(  # noqa: E731
            lambda a, g: a - 1e-3 * g, t, jax.grad(lambda s: eq.cross_entropy(eq.classifier, s, images, labels))(t))
        return jax.lax.fori_loop(0, k, step, theta)

    pair = slope_ms(pairs, params, 10, 30, repeats)
    rows = [dict(what="one JVP + VJP pair of c (m = %d, 4 x %d images)" % (m, budget.collocation), ms=pair)]
    for name, fn in (("one LSMR iteration", lsmr_iterations), ("one Gram-form CG iteration", cg_iterations),
                     ("one plain gradient step (batch %d)" % budget.batch, plain_steps)):
        rows.append(dict(what=name, ms=slope_ms(fn, params, 10, 30, repeats)))
    for row in rows:
        row["per_pair"] = row["ms"] / pair
    return rows


def equivariance_rows(quick: bool) -> list[dict]:
    budget = replace(eq.Budget(), steps=200, eval_every=100) if quick else eq.Budget()
    variants = dict(list(VARIANTS.items())[:3]) if quick else VARIANTS
    plain = eq.run("plain", 0, budget)
    rows = [dict(variant="plain Adam", **plain)]
    for name, gram in variants.items():
        row = eq.run("nullspace", 0, replace(budget, gram=gram))
        rows.append(dict(variant=name, **row))
    for row in rows:
        row["ratio"] = row["ms_per_step"] / plain["ms_per_step"]
    return rows


def score_rows(quick: bool) -> list[dict]:
    from lsqlab.applications import scores  # float64: enabled here, after the float32 parts

    jax.config.update("jax_enable_x64", True)
    data = jnp.asarray(np.random.default_rng(0).standard_normal((2000, 2)))
    held_out = scores.evaluation_pairs(jax.random.PRNGKey(1), data[:500], scores.SIGMA_GRID)
    steps = 60 if quick else 300
    rows = []
    for name, method, options in (("plain Adam", "plain", {}), ("LSMR, tol 1e-4", "nullspace", dict(gram=None)),
                                  ("dense Gram form", "nullspace", {})):
        trained = scores.train(method, data, key=jax.random.PRNGKey(0), steps=steps, **options).trained
        rows.append(dict(method=name, ms=trained.ms_per_step,
                         nasym=scores.mean_nasym(trained.params, held_out.points, held_out.sigmas),
                         iterations=np.nan if trained.projection is None else int(trained.projection.iterations[-1])))
    for row in rows:
        row["ratio"] = row["ms"] / rows[0]["ms"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (5 if args.quick else 15)
    cpu = platform.processor() or platform.machine()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cores, {cpu}")
    if "sparsity" in args.parts:
        print("\n| p | m | step | ms | x plain | ||theta_S|| after / before |\n|---|---|---|---|---|---|")
        for size in ([10**3, 10**4] if args.quick else [10**4, 10**5, 10**6]):
            for r in sparsity_rows(size, repeats):
                print(f"| {r['p']:,} | {r['m']:,} | {r['method']} | {r['ms']:.2f} | {r['ratio']:.2f} | {r['residual']:.1e} |",
                      flush=True)
    if "pairs" in args.parts:
        print("\n| cost of | ms | in JVP + VJP pairs |\n|---|---|---|")
        for r in pair_rows(repeats):
            print(f"| {r['what']} | {r['ms']:.3f} | {r['per_pair']:.2f} |", flush=True)
    if "equivariance" in args.parts:
        print("\n| solver | ms/step | x plain | iterations/step | ||c|| | inv. error (collocation) | rotated acc. | upright acc. |"
              "\n|---|---|---|---|---|---|---|---|")
        for r in equivariance_rows(args.quick):
            print(f"| {r['variant']} | {r['ms_per_step']:.3f} | {r['ratio']:.1f} | {r['solver_iterations']:.1f} | "
                  f"{r['violation']:.3g} | {r['inv_err_collocation']:.1e} | {r['acc_rotated']:.3f} | {r['acc_upright']:.3f} |",
                  flush=True)
    if "scores" in args.parts:
        print("\n| method | ms/step | x plain | iterations (last step) | NAsym (held out) |\n|---|---|---|---|---|")
        for r in score_rows(args.quick):
            print(f"| {r['method']} | {r['ms']:.2f} | {r['ratio']:.1f} | {r['iterations']} | {r['nasym']:.2e} |", flush=True)


if __name__ == "__main__":
    main()
