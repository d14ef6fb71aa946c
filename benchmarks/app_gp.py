"""GP hyperparameters tuned for prediction (lsqlab) against marginal likelihood and textbook values.

Writes gp.{csv,md} and gp_runs.csv: RMSE, NLPD, fit time and compile time per data set and method
(lsqlab.applications.gp_hyperparameters.METHODS, under their LABELS), mean ± std over 3 seeds (and, for
diabetes and Friedman #1, over 5 test folds per seed).

  co2        train on Mauna Loa CO2 before 1990, test 1990-2001 (extrapolation), GPML kernel:
             exact GP at the book's values and by marginal likelihood (scikit-learn, 2 restarts);
             random features at the book's values; random features tuned by held-out NLPD over
             5 random folds, 5 forward-chaining windows, or one window (lsqlab, gradients through the solve)
  diabetes   ARD-RBF kernel, 5-fold test (interpolation control), marginal likelihood vs held-out NLPD
  friedman1  the same on a fresh draw of 300 points per seed (noise sd 1)

    python benchmarks/app_gp.py            # 9-12 min on 2 shared cores
    python benchmarks/app_gp.py --smoke    # tiny budget, under a minute (also with LSQLAB_SMOKE=1)

The tables go to artifacts/results/ (git-ignored; artifacts/results/smoke/ on a smoke budget) or --out DIR;
--record (full budget only) overwrites the recorded tables that ship with lsqlab and notebook 07 reads
(lsqlab/applications/results/).

NumPy/SciPy (scikit-learn) run single-threaded (OPENBLAS_NUM_THREADS=1) unless the caller set it.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from lsqlab.applications import gp_hyperparameters, tables  # noqa: E402

if __name__ == "__main__":
    tables.main(gp_hyperparameters, __file__)
