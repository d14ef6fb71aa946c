"""Weight sparsity on the digits: the null-space method with a mask constraint against magnitude
pruning with retraining, L1 and a quadratic penalty, at 80%, 90% and 95% of the weights zero.

MLP 64-300-100-10 (tanh, float32), Adam (lr 1e-3, batch 64): 2000 dense steps, then 1000 steps of each
method from the dense model (lsqlab.applications.sparsity). 3 seeds (split, initialisation, batches).
The L1 weight lam and the penalty weight mu are chosen per level from a small grid by the validation
error on a fifth of the training part of seed 0 (never the test part).

Writes sparsity_runs.csv (every run), sparsity.csv and sparsity.md (mean ± std over seeds). Full run:
3-6 minutes on 2 shared CPU cores (3 min 14 s measured at load ~3; each compared run is timed as the
shortest of 3 executions); --smoke (or LSQLAB_SMOKE=1): one seed, one level, 60 steps, no strength
selection, under a minute.

    python benchmarks/app_sparsity.py [--smoke] [--out DIR | --record]

The tables go to artifacts/results/ (git-ignored; artifacts/results/smoke/ on a smoke budget) or --out DIR;
--record (full budget only) overwrites the recorded tables that ship with lsqlab and notebook 05 reads
(lsqlab/applications/results/).
"""

from __future__ import annotations

import argparse
import time

from lsqlab.applications import sparsity, tables
from lsqlab.lab.smoke import SMOKE


def configuration(smoke: bool) -> tuple[tuple[float, ...], tuple[int, ...], sparsity.Budget, dict]:
    """Levels, seeds, budget and candidate strengths (smoke: one level, one seed, one candidate each)."""
    if smoke:
        middle = {method: grid[1:2] for method, grid in sparsity.STRENGTH_GRIDS.items()}
        return (0.9,), (0,), sparsity.Budget(pretrain_steps=300, steps=60), middle
    return (0.8, 0.9, 0.95), (0, 1, 2), sparsity.Budget(), sparsity.STRENGTH_GRIDS


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budget (also LSQLAB_SMOKE=1)")
    tables.add_output_options(parser, __file__)
    args = parser.parse_args(argv)
    smoke = args.smoke or SMOKE
    out = tables.output_directory(parser, args, smoke)
    levels, seeds, budget, grids = configuration(smoke)
    start = time.perf_counter()
    strengths = sparsity.select_strengths(levels, grids, budget, seed=seeds[0])
    for (method, level), strength in strengths.items():
        print(f"{method} at {level:.0%}: strength {strength:g}", flush=True)
    runs = sparsity.compare(levels, seeds, budget, strengths)
    summary = tables.write(runs, sparsity.TABLE, sparsity.TABLE_BY, sparsity.TABLE_METRICS, directory=out)
    print(tables.markdown(summary, sparsity.TABLE_METRICS, sparsity.TABLE_BY), flush=True)
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s; written to {out}", flush=True)
    return summary


if __name__ == "__main__":
    main()
