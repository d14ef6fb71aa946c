"""Benchmark of lsqlab.lstsq: forward and gradient cost against SciPy, dense lstsq and unrolled autodiff.

Run (single-threaded BLAS, as the numbers in benchmarks/README.md were taken):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lstsq.py [--quick]

Prints one table: medians of repeated runs in one process, and ratios against the baseline of the
same row. Peak memory is XLA's temporary-buffer size of the compiled computation
(``compiled.memory_analysis().temp_size_in_bytes``), which is what grows with unrolling.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402

from lsqlab import SolverOptions, lstsq  # noqa: E402
from lsqlab.lsmr import lsmr_fixed_iterations  # noqa: E402
from lsqlab.operators import linear_map, matmul  # noqa: E402
from lsqlab.lab.problems import matrix_with_spectrum  # noqa: E402


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    jax.block_until_ready(fn())  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def temp_bytes(fn: Callable, *args) -> int:
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def problem(m: int, n: int, seed: int = 0, cond: float = 1e2) -> tuple[jax.Array, jax.Array]:
    """A = U diag(s) V^T with s log-spaced over [1/cond, 1], and a random b."""
    rng = np.random.default_rng(seed)
    A = matrix_with_spectrum(rng, m, n, np.logspace(0, -np.log10(cond), n))
    return jnp.asarray(A), jnp.asarray(rng.standard_normal(m))


def forward_rows(m: int, n: int, tol: float, repeats: int) -> list[tuple[str, float, str]]:
    A, b = problem(m, n)
    A_np, b_np = np.asarray(A), np.asarray(b)
    opts = SolverOptions(atol=tol, btol=tol, maxiter=20 * n)
    solve = jax.jit(lambda A, b: lstsq(A, b, options=opts))
    x, info = solve(A, b)
    ref = spla.lsmr(A_np, b_np, atol=tol, btol=tol, maxiter=20 * n)
    t_ours = median_seconds(lambda: solve(A, b)[0], repeats)
    t_scipy = median_seconds(lambda: spla.lsmr(A_np, b_np, atol=tol, btol=tol, maxiter=20 * n)[0], repeats)
    dense = jax.jit(lambda A, b: jnp.linalg.lstsq(A, b)[0])
    t_dense = median_seconds(lambda: dense(A, b), repeats)
    loss = lambda A, b: jnp.sum(lstsq(A, b, options=opts)[0] ** 2)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    t_grad = median_seconds(lambda: grad(A, b), repeats)
    label = f"{m}x{n}"
    its = f"{int(info.iterations)} its (SciPy {ref[2]})"
    return [
        (f"{label} forward, lsqlab LSMR", t_ours, its),
        (f"{label} forward, SciPy lsmr", t_scipy, f"lsqlab / SciPy = {t_ours / t_scipy:.2f}"),
        (f"{label} forward, dense jnp.linalg.lstsq", t_dense, f"lsqlab / dense = {t_ours / t_dense:.2f}"),
        (f"{label} value+gradient (A and b), adjoint", t_grad, f"gradient / forward = {t_grad / t_ours:.2f}"),
    ]


def unrolled_rows(m: int, n: int, iteration_counts: list[int], repeats: int) -> list[tuple[str, float, str]]:
    """Gradient by the adjoint rules against autodiff through a fixed-iteration scan, same iterations.

    cond(A) = 1e6 with a spread spectrum, so that no stop test ends the solves early (checked)."""
    A, b = problem(m, n, seed=1, cond=1e6)
    rows = []
    for k in iteration_counts:
        options = SolverOptions(atol=0.0, btol=0.0, conlim=0.0, maxiter=k)  # exactly k iterations

        def adjoint_loss(A, b):
            x, _ = lstsq(A, b, options=SolverOptions(atol=0.0, btol=0.0, conlim=0.0, maxiter=k), backward=options)
            return jnp.sum(x**2)

        def unrolled_loss(A, b):
            x, _ = lsmr_fixed_iterations(linear_map(matmul, A, A.shape, A.dtype), b, 0.0, k, options)
            return jnp.sum(x**2)

        _, info = lstsq(A, b, options=SolverOptions(atol=0.0, btol=0.0, conlim=0.0, maxiter=k))
        assert int(info.iterations) == k, (int(info.iterations), info.reason)
        adjoint = jax.grad(adjoint_loss, argnums=(0, 1))
        unrolled = jax.grad(unrolled_loss, argnums=(0, 1))
        t_adj = median_seconds(lambda: jax.jit(adjoint)(A, b), repeats)
        t_unr = median_seconds(lambda: jax.jit(unrolled)(A, b), repeats)
        mem_adj, mem_unr = temp_bytes(adjoint, A, b), temp_bytes(unrolled, A, b)
        rows.append((f"{m}x{n} gradient, {k} its, adjoint", t_adj, f"temp memory {mem_adj / 2**20:.1f} MiB"))
        rows.append((
            f"{m}x{n} gradient, {k} its, unrolled scan", t_unr,
            f"temp memory {mem_unr / 2**20:.1f} MiB; unrolled/adjoint time {t_unr / t_adj:.1f}x, "
            f"memory {mem_unr / max(mem_adj, 1):.0f}x",
        ))
    return rows


def tolerance_rows(m: int, n: int, tolerances: list[float]) -> list[tuple[str, float, str]]:
    """Relative error of d(sum x^2)/db against a dense float64 reference, as the backward tolerance
    varies with the forward solve held tight: the gradient is only as exact as the backward solves."""
    A, b = problem(m, n, seed=2)
    x = np.linalg.lstsq(np.asarray(A), np.asarray(b), rcond=None)[0]
    exact = 2 * np.linalg.pinv(np.asarray(A)).T @ x  # p = A^{+T} g with g = 2 x
    rows = []
    for tol in tolerances:
        backward = SolverOptions(atol=tol, btol=tol, maxiter=20 * n)
        grad = jax.jit(jax.grad(lambda b: jnp.sum(lstsq(A, b, options=SolverOptions(atol=1e-14, btol=1e-14, maxiter=20 * n),
                                                            backward=backward)[0] ** 2)))
        error = np.linalg.norm(np.asarray(grad(b)) - exact) / np.linalg.norm(exact)
        seconds = median_seconds(lambda: grad(b), 3)
        rows.append((f"{m}x{n} gradient, backward atol=btol={tol:.0e}", seconds, f"relative error {error:.1e}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        rows = forward_rows(200, 50, 1e-10, 3) + unrolled_rows(200, 50, [10, 50], 2)
        rows += tolerance_rows(200, 50, [1e-3, 1e-8])
    else:
        rows = forward_rows(2000, 500, 1e-10, 7) + unrolled_rows(2000, 500, [100, 1000, 5000], 3)
        rows += tolerance_rows(2000, 500, [1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12])
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}, float64")
    width = max(len(r[0]) for r in rows)
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds * 1e3:10.2f} ms   {note}")


if __name__ == "__main__":
    main()
