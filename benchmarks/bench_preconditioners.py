"""Benchmark of preconditioned LSMR on A = U diag(logspace(0, -6, n)) V^T, against numpy.linalg.lstsq.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_preconditioners.py [--quick | --large]

Default size 2000x500; ``--large`` adds 20000x2000 (sketches only; a few GB of memory). Reports the
iterations and the relative error against the dense solution of plain LSMR (capped at 5000 iterations),
Jacobi and the sketch preconditioners, and wall times of one run each (the sketch's construction
counted in), with the ratio to numpy.linalg.lstsq in the same process.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lsqlab import lstsq  # noqa: E402
from lsqlab.preconditioners import column_scaling, sketch_preconditioner  # noqa: E402
from lsqlab.problems import matrix_with_spectrum  # noqa: E402


def spread_problem(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return matrix_with_spectrum(rng, m, n, np.logspace(0, -6, n)), rng.standard_normal(m)


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def rows_for(m: int, n: int) -> list[str]:
    A_np, b_np = spread_problem(m, n)
    exact, t_numpy = timed(lambda: np.linalg.lstsq(A_np, b_np, rcond=None)[0])
    A, b = jnp.asarray(A_np), jnp.asarray(b_np)
    opts = dict(atol=1e-12, btol=1e-12, maxiter=5000)
    solve = jax.jit(lambda A, b, P: lstsq(A, b, preconditioner=P, **opts))
    rows = [f"{m}x{n} numpy.linalg.lstsq: {t_numpy:.2f} s"]
    builders = {
        "none": lambda: None,
        "Jacobi": lambda: column_scaling(A),
        "sketch (s = 4n, rank-revealing SVD)": lambda: sketch_preconditioner(A, jax.random.key(0)),
        "sketch (s = 4n, R^-1)": lambda: sketch_preconditioner(A, jax.random.key(0), rank_revealing=False),
        "sketch (s = 4n, R^-1, float32 QR)": lambda: sketch_preconditioner(
            A, jax.random.key(0), rank_revealing=False, factor_dtype=jnp.float32),
        "sketch (s = 3n, R^-1)": lambda: sketch_preconditioner(A, jax.random.key(0), oversampling=3.0,
                                                               rank_revealing=False),
        "sketch (s = 2n, R^-1)": lambda: sketch_preconditioner(A, jax.random.key(0), oversampling=2.0,
                                                               rank_revealing=False),
    }
    if m > 5000:  # plain LSMR and Jacobi already fail at 5000 iterations on the small size
        builders = {k: v for k, v in builders.items() if k.startswith("sketch")}
    for name, build in builders.items():
        jax.block_until_ready(solve(A, b, build()))  # compile (a second build is timed below)
        P, t_build = timed(build)
        (x, info), t_solve = timed(lambda: solve(A, b, P))
        error = np.linalg.norm(np.asarray(x) - exact) / np.linalg.norm(exact)
        total = t_build + t_solve
        rows.append(
            f"{m}x{n} {name:<37} {int(info.iterations):5d} its  rel. error {error:8.1e}  "
            f"build {t_build:6.2f} s + solve {t_solve:6.2f} s = {total:6.2f} s  ({total / t_numpy:.2f} x numpy)"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="400x100 only")
    group.add_argument("--large", action="store_true", help="also 20000x2000")
    args = parser.parse_args()
    sizes = [(400, 100)] if args.quick else [(2000, 500)] + ([(20000, 2000)] if args.large else [])
    print(f"machine: {platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}, float64")
    for m, n in sizes:
        for row in rows_for(m, n):
            print(row, flush=True)


if __name__ == "__main__":
    main()
