"""Hardening benchmark: gradients at small damping, and preconditioned accuracy at high condition numbers.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hardening.py            # ~17 s on 2 cores
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hardening.py --smoke    # ~8 s
    options: --out DIR (instead of benchmarks/results)

Writes hardening_gradients.csv, hardening_preconditioned.csv and hardening.md into benchmarks/results
(or --out DIR). --smoke (or LSQLAB_SMOKE=1) runs a tiny version and writes into a fresh temporary
directory unless --out names another one, so smoke runs never overwrite recorded results. The script
prints which lsqlab it imported (run it with PYTHONPATH=<a worktree> to measure another version).
NumPy/SciPy run single-threaded (OPENBLAS_NUM_THREADS=1) unless the caller set it.

(a) Gradient accuracy at small damping. L = <w, x>, x = lstsq(A, b, damp=d, atol=btol=1e-12), for a
    tall 40x10 and a wide 10x40 Gaussian A (well conditioned, seeded), d from 0 to 10. damp is a traced
    jax array (one compilation for all d); the rows "0 (float)" pass damp as the Python float 0.0
    instead (no d/d(damp) then; the code before review compiled another branch for it). Columns: relative
    error of reverse-mode dL/db, dL/dA (Frobenius), dL/d(damp), and of forward-mode dx (jax.jvp along a
    random (dA, db, d damp)), against dense float64 references from the SVD of A written here
    independently of lsqlab:
      tall:  N = A^T A + d^2 I, x = N^-1 A^T b, s = N^-1 w, p = A s, r = b - A x,
             dL/db = p, dL/dA = r s^T - p x^T, dL/dd = -2 d <s, x>,
             dx = N^-1 (A^T (db - dA x) + dA^T r - 2 d dd x);
      wide:  M = A A^T + d^2 I, y = M^-1 b, x = A^T y, q = M^-1 A w  (valid at d = 0 for full row rank),
             dL/db = q, dL/dA = y (w - A^T q)^T - q x^T, dL/dd = -2 d <q, y>,
             dy = M^-1 (db - dA x - A dA^T y - 2 d dd y), dx = dA^T y + A^T dy.
    (For d > 0 the wide formulas equal the tall ones: q = p, r = d^2 y, w - A^T q = d^2 s. At d = 0
    the term y (w - A^T q)^T = y (P_null(A) w)^T survives although r = 0, so r s^T - p x^T with
    s = N^+ w would be wrong there.) The references are checked against central finite differences
    of the dense closed form x(A, b, d) (np.linalg.solve) at d = 0, 1e-2 and 1 (asserted to 1e-6).
    At d = 0 the exact dL/d(damp) is 0 (x depends on d^2): the absolute value is reported, marked (abs).

(b) Preconditioned accuracy. Consistent problems b = A x_true, x_true Gaussian, A = Q1 diag(s) Q2^T
    (1500x300, Q1 and Q2 from the QR of seeded Gaussian matrices, s = logspace(0, -k, 300)) for
    cond = 1e6, 1e8, 1e10, and "graded": the cond-1e6 matrix times diag(logspace(0, -3, 300)) (graded
    column scales; cond(A) printed). P = sketch_preconditioner(A, jax.random.key(0)) (defaults:
    rank-revealing, k = P's columns). Relative error ||x - x_true|| / ||x_true||, iterations and istop
    of lsqlab's lstsq with P (atol = btol = 1e-14, maxiter 2000), of SciPy's lsmr on the formed
    A P (same settings, then x = P y), of numpy.linalg.lstsq, of lsqlab without P, and of SciPy's lsmr
    on A itself.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse.linalg  # noqa: E402

import lsqlab  # noqa: E402
from lsqlab import lstsq  # noqa: E402
from lsqlab.preconditioners import sketch_preconditioner  # noqa: E402
from lsqlab.solver import SolverOptions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DAMPS = (0.0, 1e-10, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-2, 1.0, 10.0)
SMOKE_DAMPS = (0.0, 1e-7, 1e-2, 1.0)
GRADIENT_TOL = 1e-12
PRECONDITIONED_TOL = 1e-14
PRECONDITIONED_MAXITER = 2000
CHECK_DAMPS = (0.0, 1e-2, 1.0)  # finite-difference check of the references
CHECK_TOL = 1e-6


# ---------------------------------------------------------------------------------------------------
# (a) dense references, independent of lsqlab
# ---------------------------------------------------------------------------------------------------


def dense_solution(A: np.ndarray, b: np.ndarray, d: float) -> np.ndarray:
    """x(A, b, d) by np.linalg.solve of the (co-)normal equations (minimum norm for wide, d = 0)."""
    m, n = A.shape
    if m >= n:
        return np.linalg.solve(A.T @ A + d * d * np.eye(n), A.T @ b)
    return A.T @ np.linalg.solve(A @ A.T + d * d * np.eye(m), b)


def reference(A: np.ndarray, b: np.ndarray, d: float, w: np.ndarray, dA: np.ndarray, db: np.ndarray,
              dd: float) -> dict[str, np.ndarray]:
    """x, dL/db, dL/dA, dL/dd of L = <w, x> and the tangent dx, from the SVD of A (formulas in the docstring)."""
    m, n = A.shape
    U, sv, Vt = np.linalg.svd(A, full_matrices=False)
    shifted = sv**2 + d * d
    if m >= n:  # N^-1 v = V diag(1 / (s^2 + d^2)) V^T v, V square
        def n_inv(v):
            return Vt.T @ ((Vt @ v) / shifted)

        x = n_inv(A.T @ b)
        s = n_inv(w)
        p = A @ s
        r = b - A @ x
        grad_b, grad_A, grad_d = p, np.outer(r, s) - np.outer(p, x), -2 * d * (s @ x)
        dx = n_inv(A.T @ (db - dA @ x) + dA.T @ r - 2 * d * dd * x)
    else:  # M^-1 u = U diag(1 / (s^2 + d^2)) U^T u, U square
        def m_inv(u):
            return U @ ((U.T @ u) / shifted)

        y = m_inv(b)
        x = A.T @ y
        q = m_inv(A @ w)
        grad_b, grad_A, grad_d = q, np.outer(y, w - A.T @ q) - np.outer(q, x), -2 * d * (q @ y)
        dy = m_inv(db - dA @ x - A @ (dA.T @ y) - 2 * d * dd * y)
        dx = dA.T @ y + A.T @ dy
    return {"x": x, "b": grad_b, "A": grad_A, "damp": np.asarray(grad_d), "dx": dx}


def finite_differences(A, b, d, w, dA, db, dd, h: float = 1e-5) -> dict[str, np.ndarray]:
    """Central differences of the dense closed form (same keys as :func:`reference`, without x)."""
    def loss(A_, b_, d_):
        return w @ dense_solution(A_, b_, d_)

    grad_b = np.array([(loss(A, b + h * e, d) - loss(A, b - h * e, d)) / (2 * h) for e in np.eye(len(b))])
    grad_A = np.zeros_like(A)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            E = np.zeros_like(A)
            E[i, j] = h
            grad_A[i, j] = (loss(A + E, b, d) - loss(A - E, b, d)) / (2 * h)
    grad_d = (loss(A, b, d + h) - loss(A, b, d - h)) / (2 * h)  # x depends on d^2: fine at d = 0
    dx = (dense_solution(A + h * dA, b + h * db, d + h * dd)
          - dense_solution(A - h * dA, b - h * db, d - h * dd)) / (2 * h)
    return {"b": grad_b, "A": grad_A, "damp": np.asarray(grad_d), "dx": dx}


def relative(value, ref) -> tuple[float, bool]:
    """(||value - ref|| / ||ref||, False), or (||value - ref||, True) when ref is exactly 0."""
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    difference = float(np.linalg.norm(value - ref))
    norm = float(np.linalg.norm(ref))
    return (difference, True) if norm == 0 else (difference / norm, False)


def gradient_problem(m: int, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "A": rng.standard_normal((m, n)), "b": rng.standard_normal(m), "w": rng.standard_normal(n),
        "dA": rng.standard_normal((m, n)), "db": rng.standard_normal(m), "dd": float(rng.standard_normal()),
    }


def check_references(problems: dict[str, dict]) -> list[str]:
    """Assert the SVD references against finite differences of the closed form; return report lines."""
    lines = []
    for shape, P in problems.items():
        for d in CHECK_DAMPS:
            ref = reference(P["A"], P["b"], d, P["w"], P["dA"], P["db"], P["dd"])
            fd = finite_differences(P["A"], P["b"], d, P["w"], P["dA"], P["db"], P["dd"])
            parts = []
            for key in ("b", "A", "damp", "dx"):
                error, absolute = relative(fd[key], ref[key])
                assert error < CHECK_TOL, f"reference check failed: {shape}, d = {d:g}, d/d{key}: {error:.1e}"
                parts.append(f"d/d{key} {error:.1e}{' (abs)' if absolute else ''}" if key != "dx"
                             else f"dx {error:.1e}")
            lines.append(f"{shape} d = {d:g}: " + ", ".join(parts))
    return lines


# ---------------------------------------------------------------------------------------------------
# (a) lsqlab
# ---------------------------------------------------------------------------------------------------


def lsqlab_derivatives(maxiter: int, static_zero: bool):
    """jit-compiled (A, b, d, w, dA, db, dd) -> (dL/dA, dL/db, dL/dd, dx, iterations, istop).

    ``static_zero``: damp is the Python float 0.0 (not differentiated; dL/dd returned as NaN)."""

    def solve(A, b, d):
        damp = 0.0 if static_zero else d
        return lstsq(A, b, damp=damp, options=SolverOptions(atol=GRADIENT_TOL, btol=GRADIENT_TOL, maxiter=maxiter))

    @jax.jit
    def run(A, b, d, w, dA, db, dd):
        def loss(A, b, d):
            x, info = solve(A, b, d)
            return jnp.dot(w, x), (info.iterations, info.istop)

        if static_zero:
            (grad_A, grad_b), (its, istop) = jax.grad(lambda A, b: loss(A, b, d), argnums=(0, 1),
                                                      has_aux=True)(A, b)
            grad_d = jnp.asarray(jnp.nan)
            _, dx = jax.jvp(lambda A, b: solve(A, b, d)[0], (A, b), (dA, db))
        else:
            (grad_A, grad_b, grad_d), (its, istop) = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(A, b, d)
            _, dx = jax.jvp(lambda A, b, d: solve(A, b, d)[0], (A, b, d), (dA, db, dd))
        return grad_A, grad_b, grad_d, dx, its, istop

    return run


def gradient_rows(problems: dict[str, dict], damps: tuple[float, ...], maxiter: int) -> list[dict]:
    rows = []
    for shape, P in problems.items():
        args = {key: jnp.asarray(P[key]) for key in ("A", "b", "w", "dA", "db")}
        dd = jnp.asarray(P["dd"])
        for static_zero in (False, True):
            run = lsqlab_derivatives(maxiter, static_zero)
            for d in ((0.0,) if static_zero else damps):
                ref = reference(P["A"], P["b"], d, P["w"], P["dA"], P["db"], P["dd"])
                grad_A, grad_b, grad_d, dx, its, istop = jax.block_until_ready(
                    run(args["A"], args["b"], jnp.asarray(d), args["w"], args["dA"], args["db"], dd))
                row = {"shape": shape, "damp": "0 (float)" if static_zero else f"{d:g}",
                       "iterations": int(its), "istop": int(istop)}
                row["err_db"], _ = relative(grad_b, ref["b"])
                row["err_dA"], _ = relative(grad_A, ref["A"])
                if static_zero:
                    row["err_ddamp"], row["ddamp_abs"] = float("nan"), False
                else:
                    row["err_ddamp"], row["ddamp_abs"] = relative(grad_d, ref["damp"])
                row["err_jvp_dx"], _ = relative(dx, ref["dx"])
                rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------
# (b) preconditioned accuracy
# ---------------------------------------------------------------------------------------------------


def spectrum_matrix(m: int, n: int, singular_values: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A = Q1 diag(s) Q2^T (Q1, Q2 from QR of Gaussian matrices) and a Gaussian x_true, all seeded."""
    rng = np.random.default_rng(seed)
    Q1, _ = np.linalg.qr(rng.standard_normal((m, n)))
    Q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q1 * singular_values) @ Q2.T, rng.standard_normal(n)


def preconditioned_problems(m: int, n: int, exponents: tuple[int, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    problems = {}
    for k in exponents:
        problems[f"cond 1e{k}"] = spectrum_matrix(m, n, np.logspace(0, -k, n), seed=0)
    A, x_true = spectrum_matrix(m, n, np.logspace(0, -6, n), seed=0)
    problems["graded: cond-1e6 A @ diag(logspace(0, -3, n))"] = (A * np.logspace(0, -3, n), x_true)
    return problems


def preconditioned_rows(problems: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    tol, maxiter = PRECONDITIONED_TOL, PRECONDITIONED_MAXITER
    rows = []
    for name, (A_np, x_true) in problems.items():
        b_np = A_np @ x_true
        A, b = jnp.asarray(A_np), jnp.asarray(b_np)

        def error(x):
            return float(np.linalg.norm(np.asarray(x) - x_true) / np.linalg.norm(x_true))

        P = sketch_preconditioner(A, jax.random.key(0))
        P_np = np.asarray(P.matrix)
        x, info = lstsq(A, b, preconditioner=P, options=SolverOptions(atol=tol, btol=tol, maxiter=maxiter))
        row = {"problem": name, "m": A_np.shape[0], "n": A_np.shape[1], "cond_A": float(np.linalg.cond(A_np)),
               "P_columns": P_np.shape[1], "cond_AP": float(np.linalg.cond(A_np @ P_np)),
               "lsqlab_P_err": error(x), "lsqlab_P_its": int(info.iterations), "lsqlab_P_istop": int(info.istop)}
        y, istop, itn = scipy.sparse.linalg.lsmr(A_np @ P_np, b_np, atol=tol, btol=tol, maxiter=maxiter)[:3]
        row.update(scipy_AP_err=error(P_np @ y), scipy_AP_its=int(itn), scipy_AP_istop=int(istop))
        row["numpy_err"] = error(np.linalg.lstsq(A_np, b_np, rcond=None)[0])
        x, info = lstsq(A, b, options=SolverOptions(atol=tol, btol=tol, maxiter=maxiter))
        row.update(lsqlab_noP_err=error(x), lsqlab_noP_its=int(info.iterations),
                   lsqlab_noP_istop=int(info.istop))
        x, istop, itn = scipy.sparse.linalg.lsmr(A_np, b_np, atol=tol, btol=tol, maxiter=maxiter)[:3]
        row.update(scipy_noP_err=error(x), scipy_noP_its=int(itn), scipy_noP_istop=int(istop))
        rows.append(row)
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------


def e(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.1e}"


def gradient_table(rows: list[dict]) -> str:
    lines = ["| A | damp | its | istop | dL/db | dL/dA | dL/d(damp) | jvp dx |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ddamp = "n/a" if r["damp"] == "0 (float)" else e(r["err_ddamp"]) + (" (abs)" if r["ddamp_abs"] else "")
        lines.append(f"| {r['shape']} | {r['damp']} | {r['iterations']} | {r['istop']} | {e(r['err_db'])} | "
                     f"{e(r['err_dA'])} | {ddamp} | {e(r['err_jvp_dx'])} |")
    return "\n".join(lines)


def preconditioned_table(rows: list[dict]) -> str:
    lines = ["| problem | m x n | cond(A) | P cols | cond(AP) | lsqlab+P err | its | istop | SciPy on AP err | its "
             "| istop | numpy.lstsq err | lsqlab no P err | its | istop | SciPy no P err | its | istop |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['m']}x{r['n']} | {e(r['cond_A'])} | {r['P_columns']} | {e(r['cond_AP'])} | "
            f"{e(r['lsqlab_P_err'])} | {r['lsqlab_P_its']} | {r['lsqlab_P_istop']} | "
            f"{e(r['scipy_AP_err'])} | {r['scipy_AP_its']} | {r['scipy_AP_istop']} | {e(r['numpy_err'])} | "
            f"{e(r['lsqlab_noP_err'])} | {r['lsqlab_noP_its']} | {r['lsqlab_noP_istop']} | "
            f"{e(r['scipy_noP_err'])} | {r['scipy_noP_its']} | {r['scipy_noP_istop']} |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def lsqlab_source() -> str:
    """Where lsqlab was imported from, with the commit of its repository (and whether it differs)."""
    package = Path(lsqlab.__file__).resolve().parent
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read-only: never take git's index lock
    try:
        commit = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, env=env, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(package), "diff", "--quiet", "HEAD", "--", "."],
                               capture_output=True, env=env, timeout=10).returncode
    except (OSError, subprocess.SubprocessError):
        return f"{lsqlab.__file__}"
    state = {0: "clean", 1: "with uncommitted changes"}.get(dirty, "state unknown")
    return f"{lsqlab.__file__} (git {commit or '?'}, lsqlab/ {state})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny version in seconds (also LSQLAB_SMOKE=1); "
                        "writes into a temporary directory unless --out is given")
    parser.add_argument("--out", type=Path, default=None, help="directory of the tables (default benchmarks/results)")
    args = parser.parse_args(argv)
    smoke = args.smoke or os.environ.get("LSQLAB_SMOKE", "").strip().lower() in {"1", "true", "yes"}
    if smoke:
        if args.out is not None and args.out.resolve() == RESULTS.resolve():
            parser.error("--smoke never writes into benchmarks/results")
        out = args.out or Path(tempfile.mkdtemp(prefix="bench_hardening_smoke_"))
    else:
        out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    header = [
        f"lsqlab: {lsqlab_source()}",
        f"machine: {platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}, numpy "
        f"{np.__version__}, scipy {scipy.__version__}, float64, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}, mode {'smoke' if smoke else 'full'}",
    ]
    print("\n".join(header), flush=True)

    shapes = {"tall 40x10": (40, 10, 0)} if smoke else {"tall 40x10": (40, 10, 0), "wide 10x40": (10, 40, 1)}
    problems = {name: gradient_problem(m, n, seed) for name, (m, n, seed) in shapes.items()}
    check = check_references(problems)
    print(f"\nreference check (SVD formulas vs central differences of the closed form, h = 1e-5; "
          f"asserted < {CHECK_TOL:g}):", flush=True)
    print("\n".join(f"  {line}" for line in check), flush=True)

    t = time.perf_counter()
    gradients = gradient_rows(problems, SMOKE_DAMPS if smoke else DAMPS, maxiter=500)
    gradient_s = time.perf_counter() - t
    table_a = gradient_table(gradients)
    title_a = (f"## (a) Gradient accuracy at small damping (L = <w, x>, atol = btol = {GRADIENT_TOL:g}, maxiter 500; "
               f"relative errors, (abs): absolute, the reference being 0; {gradient_s:.0f} s)")
    print(f"\n{title_a}\n\n{table_a}", flush=True)

    t = time.perf_counter()
    m, n = (300, 60) if smoke else (1500, 300)
    preconditioned = preconditioned_rows(preconditioned_problems(m, n, (6,) if smoke else (6, 8, 10)))
    preconditioned_s = time.perf_counter() - t
    table_b = preconditioned_table(preconditioned)
    title_b = (f"## (b) Preconditioned accuracy (consistent b = A x_true; errors ||x - x_true|| / ||x_true||; "
               f"atol = btol = {PRECONDITIONED_TOL:g}, maxiter {PRECONDITIONED_MAXITER}; P = sketch_preconditioner "
               f"defaults, key 0; {preconditioned_s:.0f} s)")
    print(f"\n{title_b}\n\n{table_b}", flush=True)

    total = time.perf_counter() - started
    write_csv(gradients, out / "hardening_gradients.csv")
    write_csv(preconditioned, out / "hardening_preconditioned.csv")
    markdown = "\n\n".join([
        "# bench_hardening.py", "\n".join(f"- {line}" for line in header + [f"total {total:.0f} s"]),
        "Reference check:\n\n" + "\n".join(f"- {line}" for line in check), title_a, table_a, title_b, table_b,
    ]) + "\n"
    (out / "hardening.md").write_text(markdown)
    print(f"\ntotal {total:.0f} s; wrote {out}/hardening_gradients.csv, hardening_preconditioned.csv, hardening.md")


if __name__ == "__main__":
    main()
