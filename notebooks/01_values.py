# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["active-ipynb"]
# # On Colab only: install lsqlab from GitHub (Colab's own jax, numpy, plotly and ipywidgets are kept).
# import subprocess
# import sys
#
# LSQLAB_REPO = "lsqlab-dev/lsqlab"
# if "google.colab" in sys.modules:
#     subprocess.run(
#         [sys.executable, "-m", "pip", "install", "-q", f"git+https://github.com/{LSQLAB_REPO}"], check=True
#     )

# %% [markdown]
# # Values: least squares, matrix-free
#
# This notebook builds up the *values* half of the lab: what $\mathrm{LstSq}$ is, why a good solver
# never forms $A^\top A$, how LSMR gets its answer from products with $A$ and $A^\top$ only, when it
# stops, how to hand it an operator that is not a matrix, and what to do when it converges too slowly.
# Every claim ends in an `assert`, so a wrong statement fails the notebook. The explorer at the end lets
# you set the shape and condition number yourself.

# %% [markdown]
# ## 1. Least squares as a function: LstSq(A, b, λ)
#
# $$\mathrm{LstSq}(A, b, \lambda) = \arg\min_x \|Ax - b\|^2 + \lambda^2\|x\|^2 ,$$
#
# read as the minimum-norm minimiser whenever the minimiser is not unique (wide or rank-deficient
# $A$ with $\lambda = 0$). Closed forms, for checking only:
# $x = (A^\top A + \lambda^2 I)^{-1}A^\top b = A^\top(AA^\top + \lambda^2 I)^{-1} b$, and $x = A^+ b$
# for $\lambda = 0$. Damping is plain least squares for the stacked matrix $[A; \lambda I]$ and
# right-hand side $[b; 0]$.

# %%
import jax

jax.config.update("jax_enable_x64", True)  # before any array is created

import jax.numpy as jnp
import numpy as np

from lsqlab import STOP_REASONS, SolverOptions, lstsq
from lsqlab.lsmr import lsmr_trace
from lsqlab.operators import linear_map, matmul
from lsqlab.preconditioners import sketch_preconditioner
from lsqlab.lab.problems import matrix_with_spectrum
from lsqlab.lab.smoke import scaled

rng = np.random.default_rng(1)
TIGHT = SolverOptions(atol=1e-12, btol=1e-12, maxiter=2000)


def spectrum_matrix(m, n, singular_values):
    """U diag(s) V^T with random orthonormal U (m x k), V (n x k), from this notebook's generator."""
    return matrix_with_spectrum(rng, m, n, singular_values)


def relative_error(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


cases = {
    "tall": (spectrum_matrix(50, 20, np.linspace(1, 3, 20)), 0.0),
    "wide (minimum norm)": (spectrum_matrix(20, 50, np.linspace(1, 3, 20)), 0.0),
    "damped": (spectrum_matrix(50, 20, np.linspace(1, 3, 20)), 0.5),
    "rank-deficient (minimum norm)": (spectrum_matrix(50, 20, np.linspace(1, 3, 8)), 0.0),
}
for name, (A, lam) in cases.items():
    b = rng.standard_normal(A.shape[0])
    x, info = lstsq(A, b, damp=lam, options=TIGHT)
    stacked = np.vstack([A, lam * np.eye(A.shape[1])])
    reference = np.linalg.pinv(stacked, rcond=1e-10) @ np.concatenate([b, np.zeros(A.shape[1])])
    print(f"{name:<30} {int(info.iterations):3d} iterations, relative error {relative_error(x, reference):.1e}")
    assert relative_error(x, reference) < 1e-9

# %% [markdown]
# ## 2. Why not the normal equations? They square the condition number
#
# $A^\top A x = A^\top b$ has the same solution, but $\operatorname{cond}(A^\top A) = \operatorname{cond}(A)^2$:
# a backward-stable solver of the normal equations loses about $\operatorname{cond}(A)^2 \varepsilon$
# of accuracy, against $\operatorname{cond}(A)\,\varepsilon$ for a method that works with $A$ itself
# (QR, or LSMR, which only ever multiplies by $A$ and $A^\top$). Shown on a consistent problem with
# $\operatorname{cond}(A) = 10^6$ and singular values clustered so that LSMR converges quickly:

# %%
A = spectrum_matrix(200, 30, np.concatenate([np.linspace(1, 2, 28), [1e-4, 1e-6]]))
x_true = rng.standard_normal(30)
b = A @ x_true
by_normal_equations = np.linalg.solve(A.T @ A, A.T @ b)
Q, R = np.linalg.qr(A)
by_qr = np.linalg.solve(R, Q.T @ b)
by_lsmr, info = lstsq(A, b, options=SolverOptions(atol=1e-15, btol=1e-15, conlim=1e12, maxiter=2000))
errors = {"normal equations": relative_error(by_normal_equations, x_true), "QR": relative_error(by_qr, x_true),
          "LSMR": relative_error(by_lsmr, x_true)}
for name, error in errors.items():
    print(f"{name:<17} relative error {error:.1e}")
print(f"cond(A) = {np.linalg.cond(A):.1e}, cond(A)^2 eps = {np.linalg.cond(A) ** 2 * 2.2e-16:.1e}")
assert errors["normal equations"] > 100 * errors["QR"] and errors["LSMR"] < 100 * errors["QR"]

# %% [markdown]
# ## 3. Golub–Kahan bidiagonalisation, step by step
#
# LSMR never forms $A^\top A$. It builds orthonormal bases $U_{k+1}$ and $V_k$ from products with $A$
# and $A^\top$ only:
#
# $$\beta_1 u_1 = b,\quad \alpha_1 v_1 = A^\top u_1,\qquad
# \beta_{k+1}u_{k+1} = Av_k - \alpha_k u_k,\quad \alpha_{k+1}v_{k+1} = A^\top u_{k+1} - \beta_{k+1}v_k ,$$
#
# so that $AV_k = U_{k+1}B_k$ with the lower-bidiagonal $B_k$ (diagonal $\alpha_1..\alpha_k$,
# subdiagonal $\beta_2..\beta_{k+1}$). Here it is, written out in NumPy:

# %%
A = spectrum_matrix(60, 25, np.logspace(0, -2, 25))
b = rng.standard_normal(60)
k = 8
U, V = np.zeros((60, k + 1)), np.zeros((25, k + 1))
alphas, betas = np.zeros(k + 1), np.zeros(k + 1)
betas[0] = np.linalg.norm(b)
U[:, 0] = b / betas[0]
v = A.T @ U[:, 0]
alphas[0] = np.linalg.norm(v)
V[:, 0] = v / alphas[0]
for j in range(k):
    u = A @ V[:, j] - alphas[j] * U[:, j]
    betas[j + 1] = np.linalg.norm(u)
    U[:, j + 1] = u / betas[j + 1]
    v = A.T @ U[:, j + 1] - betas[j + 1] * V[:, j]
    alphas[j + 1] = np.linalg.norm(v)
    V[:, j + 1] = v / alphas[j + 1]
B = np.zeros((k + 1, k))
B[np.arange(k), np.arange(k)] = alphas[:k]
B[np.arange(1, k + 1), np.arange(k)] = betas[1 : k + 1]
assert np.allclose(A @ V[:, :k], U @ B, atol=1e-12)  # A V_k = U_{k+1} B_k
assert np.allclose(U.T @ U, np.eye(k + 1), atol=1e-10) and np.allclose(V.T @ V, np.eye(k + 1), atol=1e-10)
print("A V_k = U_{k+1} B_k holds; U and V are orthonormal. B_k =")
print(np.round(B, 3))

# %% [markdown]
# ## 4. LSMR from the bases
#
# LSMR takes $x_k = V_k y_k$ and chooses $y_k$ to minimise $\|A^\top r_k\|$, the norm of the
# normal-equation residual. Since $A^\top r_k$ lies in the span of $V_{k+1}$, that is a small
# $(k+1) \times k$ least-squares problem,
# $\min_y \|V_{k+1}^\top A^\top (b - AV_k y)\|$, whose matrix is $V_{k+1}^\top A^\top A V_k$ (with the
# bidiagonal relations, $B_k^\top B_k$ stacked on $\alpha_{k+1}\beta_{k+1}e_k^\top$). Solving it densely
# reproduces the library's $k$-th iterate: the library only does the same with Givens rotations,
# updating instead of re-solving, in a few vectors of memory.

# %%
small_matrix = V.T @ A.T @ A @ V[:, :k]
expected = np.vstack([B.T @ B, alphas[k] * betas[k] * np.eye(k)[-1]])
assert np.allclose(small_matrix, expected, atol=1e-10)
y = np.linalg.lstsq(small_matrix, V.T @ A.T @ b, rcond=None)[0]
x_k = V[:, :k] @ y
trace = lsmr_trace(linear_map(matmul, jnp.asarray(A), A.shape, jnp.float64), jnp.asarray(b), 0.0, k)
print(f"step {k}: dense small problem vs library iterate, relative difference {relative_error(trace.xs[-1], x_k):.1e}")
assert relative_error(trace.xs[-1], x_k) < 1e-9

# %% [markdown]
# ## 5. Stopping rules
#
# The solver stops when one of SciPy's tests holds (`info.istop`): $\|r\| \le$ `btol` $\|b\|$ + `atol`
# $\|A\|\|x\|$ (1: the system is nearly consistent), $\|A^\top r\| \le$ `atol` $\|A\|\|r\|$ (2: a
# least-squares solution), $\operatorname{cond}(A) \ge$ `conlim` (3), their machine-precision versions
# (4–6), the iteration limit (7); `lsqlab` adds 8 for a NaN or Inf met on the way. `atol` bounds a
# *backward* error: the forward error can be $\operatorname{cond}(A)^2$ times larger on an inconsistent
# problem.

# %%
for code, reason in enumerate(STOP_REASONS):
    print(code, reason)
A = spectrum_matrix(300, 60, np.logspace(0, -2, 60))
b = rng.standard_normal(300)
exact = np.linalg.lstsq(A, b, rcond=None)[0]
results = {}
for tol in (1e-3, 1e-6, 1e-9):
    x, info = lstsq(A, b, options=SolverOptions(atol=tol, btol=tol, maxiter=1000))
    results[tol] = (int(info.iterations), relative_error(x, exact))
    print(f"atol = btol = {tol:.0e}: {results[tol][0]:4d} iterations, istop {int(info.istop)}, error {results[tol][1]:.1e}")
_, info = lstsq(A, b, options=SolverOptions(atol=1e-12, btol=1e-12, maxiter=10))
print("maxiter = 10:", info.reason)
assert int(info.istop) == 7
assert results[1e-3][0] < results[1e-6][0] < results[1e-9][0] and results[1e-9][1] < results[1e-3][1]

# %% [markdown]
# ## 6. Matrix-free operators
#
# The operator can be any linear JAX function, even one between pytrees. Denoising a signal $y$ with a
# smoothness penalty, $\min_x \|x - y\|^2 + \lambda^2\|Dx\|^2$ with $D$ the forward difference, is least
# squares for the stacked map $x \mapsto (x, \lambda Dx)$ — given here as a function returning a tuple,
# never as a matrix. $A^\top$ is derived by JAX.

# %%
n = scaled(2000, 400)
t = np.linspace(0, 1, n)
clean = np.sin(6 * np.pi * t) * np.exp(-2 * t)
noisy = clean + 0.3 * rng.standard_normal(n)
lam = 8.0


def smoothing_operator(x):
    return x, lam * (x[1:] - x[:-1])


x, info = lstsq(smoothing_operator, (jnp.asarray(noisy), jnp.zeros(n - 1)), x0=jnp.zeros(n), options=SolverOptions(atol=1e-10, btol=1e-10, maxiter=5000))
D = np.diff(np.eye(n), axis=0)
reference = np.linalg.solve(np.eye(n) + lam**2 * D.T @ D, noisy)
print(f"{int(info.iterations)} iterations; error against the dense solve {relative_error(x, reference):.1e}; "
      f"noise {relative_error(noisy, clean):.2f} -> {relative_error(x, clean):.2f}")
assert relative_error(x, reference) < 1e-7 and relative_error(x, clean) < 0.5 * relative_error(noisy, clean)

# %% [markdown]
# ## 7. Preconditioning: when the spectrum is spread
#
# LSMR's iteration count grows with the condition number. With singular values spread evenly over
# $[10^{-6}, 1]$ it does not converge in 10n iterations. A *sketch* $SA$ with $s = 4n$ random rows has
# nearly the same $R$ factor as $A$, so $AR^{-1}$ is well conditioned: `sketch_preconditioner` builds
# that $P$ (with a rank-revealing pivoted QR of $R$, so minimum-norm answers survive rank deficiency) and the same solve
# finishes in tens of iterations. For a full-rank problem, `rank_revealing=False` uses $P = R^{-1}$
# (formed once), and `factor_dtype=jnp.float32, factorisation="cholesky"` makes the sketch and its
# factorisation cheap: $P$ only has to make $AP$ well conditioned, while the solve itself stays in
# float64, so its answer does not change.

# %%
m, n = scaled((2000, 500), (400, 100))
A = jnp.asarray(spectrum_matrix(m, n, np.logspace(0, -6, n)))
b = jnp.asarray(rng.standard_normal(m))
exact = np.linalg.lstsq(np.asarray(A), np.asarray(b), rcond=None)[0]
options = SolverOptions(atol=1e-12, btol=1e-12, maxiter=10 * n)
x_plain, plain = lstsq(A, b, options=options)
x_prec, prec = lstsq(A, b, preconditioner=sketch_preconditioner(A, jax.random.key(0)), options=options)
print(f"plain LSMR:          {int(plain.iterations):5d} iterations, {plain.reason}, error {relative_error(x_plain, exact):.1e}")
print(f"sketch-preconditioned: {int(prec.iterations):3d} iterations, {prec.reason}, error {relative_error(x_prec, exact):.1e}")
assert int(plain.istop) == 7 and int(prec.iterations) < 100 and relative_error(x_prec, exact) < 1e-8
fast = sketch_preconditioner(A, jax.random.key(0), oversampling=3, sparse_nonzeros=4, rank_revealing=False,
                             factor_dtype=jnp.float32, factorisation="cholesky")
x_fast, info_fast = lstsq(A, b, preconditioner=fast, options=options)
print(f"fast recipe (s = 3n, float32 sketch, Cholesky): {int(info_fast.iterations)} iterations, "
      f"error {relative_error(x_fast, exact):.1e}")
assert int(info_fast.iterations) < 100 and relative_error(x_fast, exact) < 1e-8

# %% [markdown]
# ## 8. Explore: LSMR beside CG on the normal equations
#
# LSMR minimises $\|A^\top r_k\|$ over a growing Krylov space, so that optimality measure falls
# monotonically; CG on the normal equations (CGLS) minimises $\|r_k\|$ instead. Both converge at a rate
# set by $\operatorname{cond}(A)^2$. Set the shape and the condition number of $A$ below and watch
# $\|r_k\|$, $\|A^\top r_k\|$ and the error against the exact solution; a cross marks where each
# solver's stop test (at the tolerance set by the slider) first holds, and the readout gives the error there.

# %%
from lsqlab.lab.convergence import compare_solvers, conditioned_problem
from lsqlab.widgets.solver_explorer import SolverExplorer, stop_index, trace_index

# %%
rows, cols = scaled((300, 100), (60, 20))
explorer = SolverExplorer(rows=rows, cols=cols, cond=100.0, iterations=2 * cols)
explorer

# %% [markdown]
# Moving a control by code: a harder problem, and the drawn LSMR error is the plain function's.

# %%
explorer.cond.value = 1e4
curves = compare_solvers(conditioned_problem(rows, cols, 1e4), 2 * cols, explorer.tol.value)
np.testing.assert_allclose(explorer.figure.data[trace_index("LSMR", "error")].y, curves["LSMR"].error)
assert curves["LSMR"].error[-1] > 1e-6  # cond(A)^2 = 1e8: 2n iterations are not enough
explorer.cond.value = -1.0  # rejected with a message, the figure is kept
assert "condition number" in explorer.message.value

# %% [markdown]
# The tolerance moves the crosses. At $10^{-4}$ LSMR's test $\|A^\top r_k\| \le$ atol $\|A\|\,\|r_k\|$
# holds within a few dozen iterations while $x_k$ is still far from $x^*$: at $\operatorname{cond}(A) = 10^4$
# a small $\|A^\top r_k\|$ does not mean a small error.

# %%
explorer.tol.value = 1e-4
loose = compare_solvers(conditioned_problem(rows, cols, 1e4), 2 * cols, 1e-4)["LSMR"]
assert explorer.figure.data[stop_index("LSMR", "error")].x[0] == loose.stop_iteration
assert f"with error {loose.error[loose.stop_iteration - 1]:.2e}" in explorer.readout.value
assert loose.stop_code == 2 and loose.error[loose.stop_iteration - 1] > 0.1  # stopped, still >= 10 % off x*
explorer.tol.value = 1e-8

# %% [markdown]
# The preconditioner menu runs both solvers on $AP$; the button sweeps $\operatorname{cond}(A)$ and
# plots LSMR's iterations to the tolerance with each preconditioner. Jacobi barely helps here (these
# columns all have about the same norm: the bad conditioning is in the directions, not the scales);
# the sketch makes the count nearly independent of $\operatorname{cond}(A)$.

# %%
explorer.cond.value = 1e4
explorer.preconditioner.value = "sketch"
sketch_curves = compare_solvers(conditioned_problem(rows, cols, 1e4), 2 * cols, explorer.tol.value, "sketch")
assert sketch_curves["LSMR"].error[-1] < 1e-6  # the same problem, solved
explorer.sweep_button.click()
swept = {trace.name: np.asarray(trace.y, dtype=float) for trace in explorer.sweep_figure.data}
assert np.nanmax(swept["sketch"]) < 100 and np.isnan(swept["none"][-1])

# %% [markdown]
# ## 9. Beyond one device: sharded arrays
#
# With `jax.sharding` an array can live in pieces on several devices (GPUs, hosts under
# `jax.distributed`, or simulated CPU devices), and XLA compiles one program per device plus the
# *collectives* that move data between them. LSMR only needs products, and a product with a matrix
# split by rows splits too: with $A = [A_1; \dots; A_d]$ and $u = [u_1; \dots; u_d]$ on devices
# $1..d$,
#
# $$A v = [A_1 v; \dots; A_d v] \quad\text{(local)}, \qquad A^\top u = \textstyle\sum_i A_i^\top u_i
# \quad\text{(local, then one all-reduce of } n \text{ entries)},$$
#
# and the norms LSMR needs are sums of per-device partial sums (all-reduces of one number). So a
# sharded solve moves O(n) numbers per iteration and never gathers $A$. The demo below runs in a
# separate Python process with 4 simulated CPU devices (XLA fixes the device count when JAX first
# starts, and this kernel's JAX has started): it shards a tall $A$ by rows, solves, differentiates,
# builds a sketch preconditioner under `jit` and takes a null-space step with a sparsity mask, and
# reports where each array lives and what each compiled program communicates
# (`lsqlab.sharding.collectives`; an operation inside LSMR's loop is listed once and runs once per
# iteration). `benchmarks/bench_sharding.py` runs the same on real GPUs or hosts.

# %%
import json
import os
import subprocess
import sys
import textwrap

SHARDING_DEMO = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from lsqlab import constraints, lstsq, nullspace
    from lsqlab.preconditioners import sketch_preconditioner
    from lsqlab.sharding import collectives, largest_transfer

    m, n = int(sys.argv[1]), int(sys.argv[2])
    rows = NamedSharding(Mesh(np.array(jax.devices()), ("rows",)), PartitionSpec("rows"))
    rng = np.random.default_rng(0)
    A = jax.device_put(rng.standard_normal((m, n)), rows)  # device i holds rows [i m/4, (i+1) m/4)
    b = jax.device_put(rng.standard_normal(m), rows)
    W = jax.device_put(rng.standard_normal((m, n)), rows)  # weights with a sparsity mask, sharded alike
    mask = jax.device_put(rng.random((m, n)) < 0.5, rows)

    loss = lambda A, b: jnp.sum(lstsq(A, b)[0] ** 2)
    sketch = lambda A: sketch_preconditioner(A, jax.random.key(0)).matrix
    tx = nullspace.transform(optax.sgd(0.1), constraints.sparsity(mask), gamma=1.0)
    def step(W, state):
        updates, state = tx.update(jax.grad(lambda W: jnp.sum(jnp.sin(W)))(W), state, W)
        return W + updates, state

    x, _ = lstsq(A, b)  # eager
    dA, db = jax.jit(jax.grad(loss, argnums=(0, 1)))(A, b)
    W1, _ = jax.jit(step)(W, tx.init(W))
    programs = {"lstsq": (lambda A, b: lstsq(A, b)[0], A, b),
                "value_and_grad": (jax.value_and_grad(loss, argnums=(0, 1)), A, b),
                "sketch_preconditioner": (sketch, A), "null-space step": (step, W, tx.init(W))}
    compiled = {name: jax.jit(f).lower(*args).compile() for name, (f, *args) in programs.items()}
    print(json.dumps({
        "A's rows": {str(s.device): [s.index[0].start, s.index[0].stop] for s in A.addressable_shards},
        "layout": {name: str(value.sharding.spec) for name, value in
                   (("x", x), ("dA", dA), ("db", db), ("P", jax.jit(sketch)(A)), ("W after a step", W1))},
        "communicates": {name: collectives(program) for name, program in compiled.items()},
        "largest transfer": {name: largest_transfer(program) for name, program in compiled.items()},
    }))
""")
sharded_rows, sharded_cols = scaled((4000, 50), (800, 20))
completed = subprocess.run(
    [sys.executable, "-c", SHARDING_DEMO, str(sharded_rows), str(sharded_cols)], capture_output=True, text=True,
    timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4"))
assert completed.returncode == 0, completed.stderr[-3000:]
demo = json.loads(completed.stdout.splitlines()[-1])
print("rows of A on each device:", demo["A's rows"])
print("where the outputs live (PartitionSpec; P() = replicated):", demo["layout"])
for name, moved in demo["communicates"].items():
    print(f"{name:>22}:", moved or "nothing")

# %% [markdown]
# Reading the report: each device holds a quarter of the rows of $A$ (and of $b$, $W$, the mask).
# The solve's program moves vectors of $n$ entries and single numbers only; the gradient adds a few
# vectors of $m$ entries (the residual $r$, for $\partial L/\partial A = r s^\top - \dots$, which
# stays sharded like $A$) and reshuffles pieces of $n$-vectors (collective-permute). The sketch
# preconditioner sums the devices' sketches of their own rows (one all-reduce of the small
# $s \times n$ sketch, $s = 4n$), after which every device factorises the same sketch: $P$ is
# replicated. The null-space step with a mask is elementwise, so the weights keep their rows and the
# only traffic is the norm reported in `info.violation`. No collective moves $A$ or $W$:

# %%
largest = demo["largest transfer"]  # elements of the largest array one collective moves
assert max(largest["lstsq"], largest["value_and_grad"], largest["null-space step"]) <= sharded_rows  # vectors
assert largest["sketch_preconditioner"] == 4 * sharded_cols * sharded_cols  # the s x n sketch, not the m x n A
assert demo["layout"]["x"] == demo["layout"]["P"] == "P()"  # replicated
assert all(demo["layout"][name].startswith("P('rows'") for name in ("dA", "db", "W after a step"))
assert f"all-reduce f64[{4 * sharded_cols},{sharded_cols}]" in demo["communicates"]["sketch_preconditioner"]
assert set(demo["communicates"]["null-space step"]) <= {"all-reduce f64[]"}

# %% [markdown]
# ## Exercises
#
# 1. In section 2, make the two small singular values $10^{-2}$ and $10^{-3}$ instead. Predict: does the
#    normal-equation solve still lose digits against QR, and by roughly what factor?
# 2. In section 5, a consistent right-hand side $b = Ax$ makes stop code 1 possible. Predict which code
#    the solve then reports, and whether it needs many more or many fewer iterations than the
#    inconsistent one.
# 3. In the explorer, raise the condition number from $10^2$ to $10^4$ with the iterations fixed.
#    Predict which curve keeps falling monotonically.
#
# Answers (collapsed in JupyterLab; click to expand), checked:

# %% jupyter={"source_hidden": true}
# 1. Yes, but less: the loss is about cond(A) (1e3 here) relative to QR, not 1e6.
A1 = spectrum_matrix(200, 30, np.concatenate([np.linspace(1, 2, 28), [1e-2, 1e-3]]))
x1 = rng.standard_normal(30)
Q1, R1 = np.linalg.qr(A1)
normal_error = relative_error(np.linalg.solve(A1.T @ A1, A1.T @ (A1 @ x1)), x1)
qr_error = relative_error(np.linalg.solve(R1, Q1.T @ (A1 @ x1)), x1)
assert 10 * qr_error < normal_error < 1e-8
# 2. Code 1 (||r|| small: the residual itself can vanish) instead of 2; about as many iterations,
#    since both rates are set by the spectrum of A.
A2 = spectrum_matrix(300, 60, np.logspace(0, -2, 60))
_, consistent = lstsq(A2, A2 @ rng.standard_normal(60), options=SolverOptions(atol=1e-9, btol=1e-9, maxiter=1000))
_, inconsistent = lstsq(A2, rng.standard_normal(300), options=SolverOptions(atol=1e-9, btol=1e-9, maxiter=1000))
assert int(consistent.istop) == 1 and int(inconsistent.istop) == 2
assert abs(int(consistent.iterations) - int(inconsistent.iterations)) < 0.25 * int(inconsistent.iterations)
# 3. LSMR's ||A^T r_k||: it is what LSMR minimises; CGLS's rises and falls.
curves3 = compare_solvers(conditioned_problem(rows, cols, 1e4), 2 * cols, 1e-12)
assert np.all(np.diff(curves3["LSMR"].normar) <= 1e-10 * curves3["LSMR"].normar[0])
