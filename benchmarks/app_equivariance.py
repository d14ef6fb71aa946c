"""C4-invariant classification of the 8x8 digits: eight trainings of one MLP, 3 seeds each.

Tables (lsqlab.applications.equivariance.TABLES):
  equivariance         every method (plain, augmentation, group_average, penalty, penalty_resampled,
                       augmented_lagrangian, nullspace, nullspace_resampled; "resampled": the constraint's
                       collocation images are the first K images of each batch instead of K fixed ones) on
                       each seed: accuracy on the upright and the rotated test set, invariance error
                       E ||f(r^k x) - f(x)|| / ||f(x)|| on held-out test images and on the fixed collocation
                       images, ||c|| there, ms per step, null-space solver iterations per step;
  equivariance_tuning  the grids behind Budget's penalty_mu, al_rho and al_dual_step (first seed).

    python benchmarks/app_equivariance.py                               # 44 s on 2 cores (2026-12-01)
    python benchmarks/app_equivariance.py --table equivariance_tuning   # 26 s
    python benchmarks/app_equivariance.py --smoke                       # tiny budget, same code
    options: --out DIR, --record

The tables go to artifacts/results/ (git-ignored; artifacts/results/smoke/ on a smoke budget) or --out DIR;
--record (full budget only) overwrites the recorded tables that ship with lsqlab and notebook 04 reads
(lsqlab/applications/results/). LSQLAB_SMOKE=1 (or CI) in the environment means --smoke.
"""

from lsqlab.applications import equivariance, tables

if __name__ == "__main__":
    tables.main(equivariance, __file__)
