"""Conservative score models on 2-D data (checkerboard, 8 gaussians, two spirals): four methods, 3 seeds.

Table ``scores``: each method trains the same DSM objective (sigma log-uniform on [0.1, 3], sigma^2
weighting) with Adam for the same number of steps (lsqlab/applications/scores.py); NAsym of ds/dx on
held-out pairs, relative error against the exact score of the noised training set, energy distance and
k-NN precision/recall of annealed-Langevin samples against held-out data, milliseconds per step. The row
"exact" samples with the exact score of the noised training set: the sampler's own floor.
Table ``scores_collocation``: the null-space method on two spirals with m = 16 / 32 / 64 collocation
pairs, fixed once or redrawn every step.

    .venv/bin/python benchmarks/app_scores.py                               # scores: 218 s on 2 cores (2026-12-01)
    .venv/bin/python benchmarks/app_scores.py --table scores_collocation    # 52 s
    .venv/bin/python benchmarks/app_scores.py --smoke                       # smoke budget (also LSQLAB_SMOKE=1)

Estimates for a full run on this 2-core machine. The tables go to artifacts/results/ (git-ignored;
artifacts/results/smoke/ on a smoke budget) or --out DIR; --record (full budget only) overwrites the
recorded tables that ship with lsqlab and notebook 06 reads (lsqlab/applications/results/).
"""

import jax

jax.config.update("jax_enable_x64", True)

from lsqlab.applications import scores, tables  # noqa: E402

if __name__ == "__main__":
    tables.main(scores, __file__)
