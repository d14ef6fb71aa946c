"""Conservative score models on 2-D data (checkerboard, 8 gaussians, two spirals): four methods, 3 seeds.

Each method trains the same DSM objective (sigma log-uniform on [0.1, 3], sigma^2 weighting) with Adam for
the same number of steps; see lsqlab/applications/scores.py. Measures: NAsym of ds/dx on held-out pairs,
relative error against the exact score of the noised training set, energy distance and k-NN
precision/recall of annealed-Langevin samples against held-out data, milliseconds per step. The row
"exact" samples with the exact score of the noised training set: the sampler's own floor.

    .venv/bin/python benchmarks/app_scores.py                 # scores.{csv,md}: 4 min
    .venv/bin/python benchmarks/app_scores.py --collocation   # scores_collocation (fixed vs redrawn, m): 1 min
    .venv/bin/python benchmarks/app_scores.py --smoke         # ~25 s (also LSQLAB_SMOKE=1)

The tables go to artifacts/results/ (git-ignored; artifacts/results/smoke/ on a smoke budget) or --out DIR;
--record (full budget only) overwrites the recorded tables that ship with lsqlab and notebook 06 reads
(lsqlab/applications/results/).

Times measured on 2 vCPUs; the null-space step costs ~2.6 ms against ~1 ms for the plain network (each
step is its own compiled call), the exact-score sampler ~20 s per row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from lsqlab.applications import scores, tables  # noqa: E402
from lsqlab.data import TOY_2D, toy_2d  # noqa: E402
from lsqlab.lab.smoke import SMOKE  # noqa: E402

SEEDS = (0, 1, 2)
FULL = scores.Budget(steps=1500)
SMOKE_BUDGET = scores.Budget(steps=20, num_train=200, num_test=200, num_eval=20, num_samples=100, num_levels=4,
                             steps_per_level=4)
METRICS = ("nasym", "score_error", "energy_distance", "precision", "recall", "ms_per_step")

COLLOCATION_DATA = "two_spirals"
COLLOCATION_SIZES = (16, 32, 64)
COLLOCATION_STEPS = 800
COLLOCATION_METRICS = ("nasym_train_pairs", "nasym", "score_error", "ms_per_step", "solver_iterations")


def main_table(budget: scores.Budget, out: Path) -> list[dict]:
    """3 seeds x 3 data sets x (4 methods + the exact score)."""
    runs = []
    for seed in SEEDS:
        for data_name in TOY_2D:
            for method in (*scores.METHODS, "exact"):
                start = time.perf_counter()
                row = scores.experiment(data_name, method, seed, budget).row
                runs.append(row)
                print(f"{data_name:16s} {method:14s} seed {seed}: " + ", ".join(
                    f"{m} {row[m]:.3g}" for m in METRICS) + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    return tables.write(runs, "scores", by=("data", "method"), metrics=METRICS, directory=out)


def collocation_table(budget: scores.Budget, out: Path, sizes: tuple[int, ...] = COLLOCATION_SIZES) -> list[dict]:
    """Null-space method on two spirals: m collocation pairs, fixed once or redrawn every step.

    nasym_train_pairs: NAsym on the fixed pairs themselves (fixed) or on m fresh training pairs (resampled);
    nasym: on held-out pairs, as in the main table. solver_iterations: of the last step (both solves;
    0 for the dense Gram form, which does not iterate).
    """
    runs = []
    for seed in SEEDS:
        train_data = jnp.asarray(toy_2d(COLLOCATION_DATA, budget.num_train, seed=seed))
        test_data = jnp.asarray(toy_2d(COLLOCATION_DATA, budget.num_test, seed=10_000 + seed))
        key_train, key_eval, key_fresh = jax.random.split(jax.random.key(seed), 3)
        held_out = scores.evaluation_pairs(key_eval, test_data[: budget.num_eval], scores.SIGMA_GRID)
        for m in sizes:
            for resample in (False, True):
                run = scores.train("nullspace", train_data, key=key_train, steps=budget.steps, num_collocation=m,
                                   resample=resample)
                own = run.collocation
                if own is None:  # resampled: m fresh training pairs
                    own = scores.collocation_pairs(key_fresh, train_data, m)
                row = dict(
                    collocation="resampled" if resample else "fixed", m=m, seed=seed,
                    nasym_train_pairs=scores.mean_nasym(run.params, own.points, own.sigmas),
                    nasym=scores.mean_nasym(run.params, held_out.points, held_out.sigmas),
                    score_error=scores.relative_score_error(scores.model_score(run.params), held_out, train_data,
                                                            len(scores.SIGMA_GRID)),
                    ms_per_step=1e3 * run.seconds_per_step,
                    solver_iterations=int(run.info.iterations),
                )
                runs.append(row)
                print(", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                      flush=True)
    return tables.write(runs, "scores_collocation", by=("collocation", "m"), metrics=COLLOCATION_METRICS,
                        directory=out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny budget (seconds); also LSQLAB_SMOKE=1")
    tables.add_output_options(parser, __file__)
    parser.add_argument("--collocation", action="store_true", help="the fixed-vs-resampled collocation table")
    args = parser.parse_args(argv)
    smoke = args.smoke or SMOKE
    out = tables.output_directory(parser, args, smoke)
    start = time.perf_counter()
    print(f"machine: {os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()}), float64,"
          f" {'smoke' if smoke else 'full'} budget", flush=True)
    if args.collocation:
        budget = SMOKE_BUDGET if smoke else scores.Budget(steps=COLLOCATION_STEPS)
        summary = collocation_table(budget, out, COLLOCATION_SIZES[:1] if smoke else COLLOCATION_SIZES)
        print(tables.markdown(summary, COLLOCATION_METRICS, ("collocation", "m")))
    else:
        summary = main_table(SMOKE_BUDGET if smoke else FULL, out)
        print(tables.markdown(summary, METRICS, ("data", "method")))
    print(f"total {time.perf_counter() - start:.0f} s; written to {out}")


if __name__ == "__main__":
    sys.exit(main())
