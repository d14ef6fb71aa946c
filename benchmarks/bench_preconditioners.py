"""Benchmark of preconditioned LSMR on A = U diag(logspace(0, -6, n)) V^T, against numpy.linalg.lstsq.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_preconditioners.py [--quick | --large]

Default size 2000x500; ``--large`` adds 20000x2000 (sketches only; a few GB of memory). Reports the
iterations and the relative error against the dense solution of plain LSMR (capped at 5000 iterations),
Jacobi and the sketch preconditioners (nnz: nonzeros per column of the sparse sign sketch; R^-1 or the
rank-revealing SVD; float32: sketch and factorisation in float32; Cholesky: R from the Gram matrix of
the sketch, formed in float64, instead of QR), and wall times of one run each (the
sketch's construction counted in), with the ratio to numpy.linalg.lstsq in the same process. "A P
formed": the solve formed A P once (the composed product's rounding floor, eps ||A||_F ||P||_F / k,
is above a tenth of the tolerance; see lsqlab.preconditioners.Preconditioned).
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
from lsqlab.preconditioners import column_scaling, product_rounding, sketch_preconditioner  # noqa: E402
from lsqlab.solver import SolverOptions  # noqa: E402
from lsqlab.lab.problems import matrix_with_spectrum  # noqa: E402


def spread_problem(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return matrix_with_spectrum(rng, m, n, np.logspace(0, -6, n)), rng.standard_normal(m)


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def sketch(oversampling: float, nonzeros: int, factor_dtype=None, rank_revealing: bool = False,
           factorisation: str = "qr"):
    return lambda A: sketch_preconditioner(A, jax.random.key(0), oversampling=oversampling,
                                           sparse_nonzeros=nonzeros, factor_dtype=factor_dtype,
                                           rank_revealing=rank_revealing, factorisation=factorisation)


BUILDERS = {
    "none": lambda A: None,
    "Jacobi": column_scaling,
    "sketch defaults (s = 4n, nnz 8, pivoted QR)": sketch(4.0, 8, rank_revealing=True),
    "sketch (s = 4n, nnz 8, R^-1)": sketch(4.0, 8),
    "sketch (s = 3n, nnz 4, R^-1, float32 QR)": sketch(3.0, 4, jnp.float32),
    "sketch (s = 3n, nnz 4, R^-1, float32, Cholesky)": sketch(3.0, 4, jnp.float32, factorisation="cholesky"),
    "sketch (s = 2n, nnz 4, R^-1, float32, Cholesky)": sketch(2.0, 4, jnp.float32, factorisation="cholesky"),
}


def rows_for(m: int, n: int, tol: float) -> list[str]:
    A_np, b_np = spread_problem(m, n)
    exact, t_numpy = timed(lambda: np.linalg.lstsq(A_np, b_np, rcond=None)[0])
    A, b = jnp.asarray(A_np), jnp.asarray(b_np)
    solve = jax.jit(lambda A, b, P: lstsq(A, b, preconditioner=P, options=SolverOptions(atol=tol, btol=tol, maxiter=5000)))
    rows = [f"{m}x{n} numpy.linalg.lstsq: {t_numpy:.2f} s"]
    for name, build in BUILDERS.items():
        if m > 5000 and not name.startswith("sketch"):
            continue  # plain LSMR and Jacobi already fail at 5000 iterations on the small size
        jax.block_until_ready(solve(A, b, build(A)))  # compile (a second build is timed below)
        P, t_build = timed(lambda: build(A))
        (x, info), t_solve = timed(lambda: solve(A, b, P))
        error = np.linalg.norm(np.asarray(x) - exact) / np.linalg.norm(exact)
        total = t_build + t_solve
        formed = hasattr(P, "matrix") and float(product_rounding(A, P.matrix)) > 0.1 * tol
        rows.append(
            f"{m}x{n} {name:<47} {int(info.iterations):5d} its  rel. error {error:8.1e}  "
            f"build {t_build:5.2f} s + solve {t_solve:5.2f} s = {total:5.2f} s  ({total / t_numpy:.2f} x numpy)"
            f"{'  A P formed' if formed else ''}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="400x100 only")
    group.add_argument("--large", action="store_true", help="also 20000x2000")
    parser.add_argument("--tol", type=float, default=1e-10, help="LSMR's atol = btol (default 1e-10)")
    args = parser.parse_args()
    sizes = [(400, 100)] if args.quick else [(2000, 500)] + ([(20000, 2000)] if args.large else [])
    print(f"machine: {platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}, float64, "
          f"atol = btol = {args.tol:g}")
    for m, n in sizes:
        for row in rows_for(m, n, args.tol):
            print(row, flush=True)


if __name__ == "__main__":
    main()
