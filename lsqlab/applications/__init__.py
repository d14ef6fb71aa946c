"""What to do with the solver: the paper's applications, each a module with the same few names.

Every application module exposes ``METHODS`` ("plain": the unconstrained baseline, "nullspace": the
null-space method), a frozen ``Budget`` whose defaults are the recorded table's and its ``SMOKE``
budget, ``run(method, seed, budget)`` (one table row) and ``TABLES`` (:class:`.tables.Table`). They share
:mod:`.training` (the training loop: compiled chunks, one timing statistic, solver diagnostics),
:mod:`.tables` (results over seeds, rendered one way; the command behind ``benchmarks/app_*.py``) and
:mod:`.mlp` (the small networks). The GP keeps its full-batch tuning loop (:mod:`.gp_tuning` says why).
"""
