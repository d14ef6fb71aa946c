"""Weight sparsity on the digits: the null-space method with a mask constraint against magnitude
pruning with retraining, L1 and a quadratic penalty, at 80%, 90% and 95% of the weights zero.

MLP 64-300-100-10 (tanh, float32), Adam (lr 1e-3, batch 64): 2000 dense steps per seed, then 1000 steps
of each method from the dense model (lsqlab.applications.sparsity; the plain-Adam run is the reference).
3 seeds (split, initialisation, batches). The L1 weight lam and the penalty weight mu are chosen per
level from a small grid by the validation error on a fifth of the training part of seed 0 (never the
test part).

Table "sparsity": sparsity_runs.csv (every run), sparsity.csv and sparsity.md (mean ± std over seeds).
Full run: 115 s on 2 CPU cores (2026-12-01); --smoke (or LSQLAB_SMOKE=1): one seed, one
level, 60 steps, no strength selection, under a minute.

    python benchmarks/app_sparsity.py [--smoke] [--out DIR | --record]

The tables go to artifacts/results/ (git-ignored; artifacts/results/smoke/ on a smoke budget) or --out DIR;
--record (full budget only) overwrites the recorded tables that ship with lsqlab and notebook 05 reads
(lsqlab/applications/results/).
"""

from lsqlab.applications import sparsity, tables

if __name__ == "__main__":
    tables.main(sparsity, __file__)
