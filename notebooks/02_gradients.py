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
# # Gradients: differentiating through a least-squares solve
#
# A solve $x^\star = \mathrm{LstSq}(A, b, \lambda) = \arg\min_x \|Ax-b\|^2 + \lambda^2\|x\|^2$ sits
# inside a loss $\mu(x^\star)$. We want $\partial\mu/\partial b$, $\partial\mu/\partial A$ (or the
# parameters $\theta$ that $A$ is built from) and $\partial\mu/\partial\lambda$ without
# differentiating the iterations of the solver. Throughout, $g = \partial\mu/\partial x^\star$ is the
# incoming cotangent and $r = b - Ax^\star$ the residual.
#
# Each derivation states its assumptions and ends in an `assert` against an independent reference:
# a dense float64 formula and central finite differences. `lsqlab`'s own rules live in one place,
# `lsqlab/gradients.py`; if a sign there were wrong, this notebook would fail.

# %%
import time
from functools import partial

import jax

jax.config.update("jax_enable_x64", True)  # before any array is created

import jax.numpy as jnp
import numpy as np

from lsqlab import SolverOptions, lstsq
from lsqlab.lsmr import lsmr_fixed_iterations
from lsqlab.operators import linear_map, matmul
from lsqlab.lab.problems import matrix_with_spectrum
from lsqlab.lab.smoke import scaled

rng = np.random.default_rng(0)
TIGHT = SolverOptions(atol=1e-13, btol=1e-13, maxiter=5000)


def spectrum_matrix(m, n, singular_values):
    """U diag(s) V^T with random orthonormal U (m x k), V (n x k), from this notebook's generator."""
    return matrix_with_spectrum(rng, m, n, singular_values)


def central_difference(f, h=1e-4):
    """Fourth-order central difference of e -> f(e) at e = 0."""
    return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)


def relative_error(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


# %% [markdown]
# ## 1. Tall, full column rank, no damping
#
# **Assumptions:** $A \in \mathbb{R}^{m\times n}$, $m \ge n$, rank $n$, $\lambda = 0$. Then $x^\star$
# solves the normal equations $A^\top A x = A^\top b$. Differentiating them,
#
# $$A^\top A\,\dot x + (\dot A^\top A + A^\top \dot A)\,x = \dot A^\top b + A^\top \dot b
# \quad\Longrightarrow\quad
# A^\top A\,\dot x = A^\top(\dot b - \dot A x) + \dot A^\top r .$$
#
# For reverse mode pair $\dot x$ with $g$ and move $(A^\top A)^{-1}$ across (it is symmetric): with
# $s = (A^\top A)^{-1} g$ and $p = A s$,
#
# $$\langle g, \dot x\rangle = \langle p, \dot b\rangle - \langle p, \dot A x\rangle + \langle r, \dot A s\rangle
# \quad\Longrightarrow\quad
# \frac{\partial\mu}{\partial b} = p, \qquad \frac{\partial\mu}{\partial A} = r s^\top - p\,x^\top .$$
#
# Matrix-free, $p = \mathrm{LstSq}(A^\top, g)$ and $s = \mathrm{LstSq}(A, p)$: **two extra solves**.

# %%
m, n = 40, 12
A = spectrum_matrix(m, n, np.logspace(0, -1, n))
b = rng.standard_normal(m)
w = rng.standard_normal(n)


def loss(A, b, damp=0.0, **kwargs):
    """mu(x) = <w, x> + |x|^2 / 2, so that g = w + x depends on the solution."""
    x, _ = lstsq(A, b, damp=damp, options=TIGHT, **kwargs)
    return jnp.dot(w, x) + 0.5 * jnp.dot(x, x)


grad_A, grad_b = jax.grad(loss, argnums=(0, 1))(A, b)

x = np.linalg.lstsq(A, b, rcond=None)[0]
r = b - A @ x
g = w + x
s = np.linalg.solve(A.T @ A, g)
p = A @ s
assert relative_error(grad_b, p) < 1e-9
assert relative_error(grad_A, np.outer(r, s) - np.outer(p, x)) < 1e-9
print("dmu/db and dmu/dA match the formulas:", relative_error(grad_b, p), relative_error(grad_A, np.outer(r, s) - np.outer(p, x)))

# %% [markdown]
# And against finite differences, along a random direction $(\dot A, \dot b)$:

# %%
dA, db = 1e-2 * rng.standard_normal((m, n)), 1e-2 * rng.standard_normal(m)
fd = central_difference(lambda e: loss(A + e * dA, b + e * db))
adjoint = np.sum(np.asarray(grad_A) * dA) + np.dot(np.asarray(grad_b), db)
assert abs(adjoint - fd) < 1e-7 * abs(fd)
print(f"adjoint {adjoint:.10f}   finite differences {fd:.10f}")

# %% [markdown]
# ## 2. Wide, full row rank: the minimum-norm solution
#
# **Assumptions:** $m < n$, rank $m$, $\lambda = 0$. Now $x^\star = A^\top y$ with
# $A A^\top y = b$ (the minimum-norm solution lies in the row space). Differentiating
# $x = A^\top y$ and $AA^\top y = b$:
#
# $$\dot x = \dot A^\top y + A^\top \dot y, \qquad AA^\top \dot y = \dot b - \dot A x - A\dot A^\top y .$$
#
# Pairing with $g$, with $p = (AA^\top)^{-1} A g = \mathrm{LstSq}(A^\top, g)$ and
# $n_g = g - A^\top p$ (the part of $g$ in the null space of $A$):
#
# $$\frac{\partial\mu}{\partial b} = p, \qquad \frac{\partial\mu}{\partial A} = -p\,x^\top + y\,n_g^\top .$$
#
# The second term is what a "tall" formula misses: it moves $x$ *within* the null space as the row
# space of $A$ turns.

# %%
A_wide = spectrum_matrix(12, 40, np.logspace(0, -1, 12))
b_wide = rng.standard_normal(12)
w = rng.standard_normal(40)
grad_A, grad_b = jax.grad(loss, argnums=(0, 1))(A_wide, b_wide)

pinv = np.linalg.pinv(A_wide)
x = pinv @ b_wide
y = pinv.T @ x
g = w + x
p = pinv.T @ g
n_g = g - A_wide.T @ p
assert relative_error(grad_b, p) < 1e-9
assert relative_error(grad_A, -np.outer(p, x) + np.outer(y, n_g)) < 1e-9
dA = 1e-2 * rng.standard_normal(A_wide.shape)
fd = central_difference(lambda e: loss(A_wide + e * dA, b_wide))
assert abs(np.sum(np.asarray(grad_A) * dA) - fd) < 1e-7 * abs(fd)
print("wide: formulas and finite differences agree")

# %% [markdown]
# ## 3. Damping
#
# **Assumptions:** $\lambda > 0$, any shape, any rank. The normal equations become
# $(A^\top A + \lambda^2 I)x = A^\top b$ and $N = A^\top A + \lambda^2 I$ is always invertible, so
# section 1 carries over with $s = N^{-1} g$, plus one more term from $\dot\lambda$:
#
# $$N\dot x = A^\top(\dot b - \dot A x) + \dot A^\top r - 2\lambda\dot\lambda\, x
# \quad\Longrightarrow\quad \frac{\partial\mu}{\partial\lambda} = -2\lambda\,\langle s, x\rangle .$$
#
# And $s$ costs only **one** solve, with the stacked operator $[A^\top,\ \lambda I]$: the
# minimum-norm solution of $A^\top w_1 + \lambda w_2 = g$ is $w = [A;\ \lambda I]\,N^{-1} g$, so
# $s = w_2/\lambda$ (and $w_1 = p = \mathrm{LstSq}(A^\top, g, \lambda)$). A rank-deficient $A$ is
# the test that matters: an undamped solve for $s$ would lose the part of $g$ in the null space of $A$.

# %%
A_def = spectrum_matrix(30, 12, np.logspace(0, -1, 6))  # rank 6 < 12
b = rng.standard_normal(30)
w = rng.standard_normal(12)
lam = 0.3
grad_A, grad_b, grad_lam = jax.grad(loss, argnums=(0, 1, 2))(A_def, b, lam)

N = A_def.T @ A_def + lam**2 * np.eye(12)
x = np.linalg.solve(N, A_def.T @ b)
r = b - A_def @ x
s = np.linalg.solve(N, w + x)
p = A_def @ s
assert relative_error(grad_b, p) < 1e-9
assert relative_error(grad_A, np.outer(r, s) - np.outer(p, x)) < 1e-9
assert abs(float(grad_lam) - (-2 * lam * s @ x)) < 1e-9 * abs(2 * lam * s @ x)
fd = central_difference(lambda e: loss(A_def, b, lam + e))
assert abs(float(grad_lam) - fd) < 1e-7 * abs(fd)
print(f"dmu/dlambda = {float(grad_lam):.8f}, finite differences {fd:.8f}")

# %% [markdown]
# ### Why not $s = (g - A^\top p)/\lambda^2$?
#
# The same $p$ gives $s$ in closed form: $A^\top p = A^\top A N^{-1} g = g - \lambda^2 s$, so
# $s = (g - A^\top p)/\lambda^2$. It is exact in exact arithmetic and wrong in floating point for small
# $\lambda$: $g - A^\top p$ subtracts two vectors that agree to about $(\lambda/\|A\|)^2$ of their size,
# so a solve accurate to a relative `tol` gives $s$ with relative error about
# $\mathrm{tol}\,(\|A\|/\lambda)^2$. `lsqlab` used it until review found gradients off by
# $10^{-2}$ at $\lambda = 10^{-6}$ and by $5\cdot 10^5$ at $10^{-10}$ (`benchmarks/README.md`, before and
# after). The stacked solve never subtracts: measured below on a tall $40\times 10$ $A$ at
# `tol` $= 10^{-12}$, against a dense solve.

# %%
import plotly.graph_objects as go

from lsqlab.lab.gradient_accuracy import damping_sweep
from lsqlab.widgets.layout import fit_page, show

sweep = damping_sweep(rng.standard_normal((40, 10)), rng.standard_normal(10), np.logspace(-10, 1, scaled(12, 6)))
fig = go.Figure()
for name, errors in (("shortcut (g - Aᵀp)/λ²", sweep.shortcut), ("stacked [Aᵀ, λI]", sweep.stacked),
                     ("lstsq's dμ/db", sweep.rule)):
    fig.add_scatter(x=sweep.damps, y=np.maximum(errors, 1e-17), mode="lines+markers", name=name)
fig.update_layout(xaxis=dict(type="log", title="damping λ"), yaxis=dict(type="log", title="relative error of s"),
                  height=380, margin=dict(t=30))
show(fit_page(fig))
assert np.all(sweep.stacked < 1e-10) and np.all(sweep.rule < 1e-10)
assert np.max(sweep.shortcut[sweep.damps <= 1e-7]) > 1e-3

# %% [markdown]
# ## 4. Rank-deficient and undamped: the pseudo-inverse
#
# **Assumptions:** $\lambda = 0$, rank $k < \min(m, n)$, and perturbations that keep the rank
# (otherwise $A^+$ is not even continuous). The derivative of the pseudo-inverse (Golub & Pereyra,
# 1973) gives
#
# $$\dot x = -A^+\dot A x + A^+A^{+\top}\dot A^\top r + (I - A^+A)\,\dot A^\top A^{+\top}x ,$$
#
# three terms, of which sections 1 and 2 each kept two. In reverse mode, with $p = \mathrm{LstSq}(A^\top, g)$,
# $s = \mathrm{LstSq}(A, p)$, $t = \mathrm{LstSq}(A^\top, x)$ and $n_g = g - A^\top p$:
# $\partial\mu/\partial A = -p x^\top + r s^\top + t n_g^\top$. `lstsq` applies it with
# `assume_full_rank=False`. Rank-preserving directions: write $A = LR^\top$ and perturb the factors.

# %%
L, R = rng.standard_normal((30, 5)), rng.standard_normal((12, 5))  # rank 5, tall 30 x 12
dL, dR = 1e-2 * rng.standard_normal(L.shape), 1e-2 * rng.standard_normal(R.shape)
b = rng.standard_normal(30)
w = rng.standard_normal(12)


@partial(jax.jit, static_argnums=1)
def along(e, full_rank):
    return loss((L + e * dL) @ (R + e * dR).T, b, assume_full_rank=full_rank)


fd = central_difference(lambda e: along(e, False))
exact_rule = jax.jvp(lambda e: along(e, False), (0.0,), (1.0,))[1]
full_rank_rule = jax.jvp(lambda e: along(e, True), (0.0,), (1.0,))[1]
print(f"finite differences {fd:.8f}\nany-rank rule      {float(exact_rule):.8f}\nfull-rank rule     {float(full_rank_rule):.8f}")
assert abs(float(exact_rule) - fd) < 1e-6 * abs(fd)
assert abs(float(full_rank_rule) - fd) > 1e-2 * abs(fd)  # the error published peers make

# %% [markdown]
# ## 5. Why not just unroll the iterations?
#
# Differentiating through the solver's iterations (here LSMR written as a `lax.scan`) also gives the
# gradient, once the iteration has converged, but reverse mode must store every iterate: memory grows
# with the number of iterations. The adjoint rules store nothing of the iteration. Below: compiled
# temporary memory (XLA's own count) and time of one gradient, for the same number of iterations.

# %%
m, n = scaled((1000, 250), (200, 50))
A_big = jnp.asarray(spectrum_matrix(m, n, np.logspace(0, -6, n)))
b_big = jnp.asarray(rng.standard_normal(m))


def adjoint_grad(k):
    opts = SolverOptions(atol=0.0, btol=0.0, conlim=0.0, maxiter=k)
    return jax.jit(jax.grad(lambda b: jnp.sum(lstsq(A_big, b, options=SolverOptions(atol=0.0, btol=0.0, conlim=0.0, maxiter=k),
                                                    backward=opts)[0] ** 2)))


def unrolled_grad(k):
    op = linear_map(matmul, A_big, A_big.shape, A_big.dtype)
    opts = SolverOptions(atol=0.0, btol=0.0, conlim=0.0)
    return jax.jit(jax.grad(lambda b: jnp.sum(lsmr_fixed_iterations(op, b, 0.0, k, opts)[0] ** 2)))


def cost(make, k):
    fn = make(k)
    memory = fn.lower(b_big).compile().memory_analysis().temp_size_in_bytes
    jax.block_until_ready(fn(b_big))
    start = time.perf_counter()
    jax.block_until_ready(fn(b_big))
    return memory / 2**20, time.perf_counter() - start


iteration_counts = scaled([50, 200, 800], [20, 80])
table = {k: (cost(adjoint_grad, k), cost(unrolled_grad, k)) for k in iteration_counts}
print(f"{'iterations':>10} {'adjoint MiB':>12} {'unrolled MiB':>13} {'adjoint s':>10} {'unrolled s':>11}")
for k, ((mem_a, t_a), (mem_u, t_u)) in table.items():
    print(f"{k:>10} {mem_a:>12.2f} {mem_u:>13.2f} {t_a:>10.4f} {t_u:>11.4f}")
first, last = iteration_counts[0], iteration_counts[-1]
growth = table[last][1][0] / table[first][1][0]
assert growth > 0.5 * last / first  # unrolled memory grows with the iteration count...
assert table[last][0][0] <= 1.01 * table[first][0][0] + 0.01  # ...the adjoint's does not

# %% [markdown]
# ## 6. The gradient is only as exact as the backward solves
#
# The two extra solves stop at their own tolerances (`backward=SolverOptions(...)`, default: the
# forward ones). Their error enters the gradient amplified by about $\operatorname{cond}(A)^2$ for
# the $s$-solve, so a loose backward tolerance gives a loose gradient even when $x^\star$ is exact.

# %%
A_c = spectrum_matrix(200, 50, np.logspace(0, -2, 50))  # cond 100
b_c = rng.standard_normal(200)
x = np.linalg.lstsq(A_c, b_c, rcond=None)[0]
exact = 2 * np.linalg.pinv(A_c).T @ x  # d|x|^2/db = p with g = 2x
errors = {}
for tol in scaled((1e-2, 1e-4, 1e-6, 1e-8, 1e-10), (1e-2, 1e-10)):
    backward = SolverOptions(atol=tol, btol=tol, maxiter=5000)
    grad = jax.grad(lambda b: jnp.sum(lstsq(A_c, b, options=TIGHT, backward=backward)[0] ** 2))(b_c)
    errors[tol] = relative_error(grad, exact)
    print(f"backward atol = btol = {tol:.0e}: relative gradient error {errors[tol]:.1e}")
assert errors[1e-10] < 1e-6 < errors[1e-2]
assert all(errors[a] >= errors[b] for a, b in zip(list(errors)[:-1], list(errors)[1:]))

# %% [markdown]
# ## 7. Forward mode, and Hessian-vector products
#
# The same rule, read forwards: $\dot x = N^{-1}[A^\top(\dot b - \dot A x) + \dot A^\top r - 2\lambda\dot\lambda x]$
# is one more solve per direction. In `lsqlab` reverse mode is obtained by *transposing* that forward
# rule (every solve in it is a symmetric `custom_linear_solve`), so `jax.jvp`, `jax.jacfwd` and
# forward-over-reverse Hessian-vector products all work.

# %%
A = spectrum_matrix(30, 10, np.linspace(1, 2, 10))
b = rng.standard_normal(30)
w = rng.standard_normal(10)
J_fwd = jax.jacfwd(lambda b: lstsq(A, b, options=TIGHT)[0])(b)
assert relative_error(J_fwd, np.linalg.pinv(A)) < 1e-9  # dx/db = A^+


def cubic(b):
    x = lstsq(A, b, options=TIGHT)[0]
    return jnp.sum(x**3) / 3 + jnp.dot(w, x)


v = rng.standard_normal(30)
grad_cubic = jax.jit(jax.grad(cubic))
hvp = jax.jvp(grad_cubic, (b,), (v,))[1]
hvp_fd = central_difference(lambda e: grad_cubic(b + e * v))
assert relative_error(hvp, hvp_fd) < 1e-7
print("Hessian-vector product matches finite differences of the gradient:", relative_error(hvp, hvp_fd))

# %% [markdown]
# ## 8. Explore: adjoint, unrolled, finite differences
#
# A derivative through an iterative solve can be taken three ways: by the adjoint rules (a few more
# solves), by differentiating through every iteration (memory grows with the iteration count), or by
# finite differences (two solves per direction). Below, each one's error against a dense reference and
# its time, as the solver tolerance and the rank of $A$ change. Lower the rank: the finite differences
# break (a perturbed $A$ has full rank), and the adjoint needs `assume_full_rank=False`. The first
# drawing compiles the adjoint once per tolerance (a few seconds each).

# %%
from lsqlab.lab.gradient_accuracy import TOLERANCES, gradient_problem, measure
from lsqlab.widgets.adjoint_explorer import AdjointExplorer, error_trace

# %%
tolerances = scaled(TOLERANCES, (1e-4, 1e-14))
explorer = AdjointExplorer(rows=60, cols=30, tolerances=tolerances)
explorer

# %% [markdown]
# By code: lower the rank to 20. With `assume_full_rank=True` the adjoint is now wrong and the finite
# differences are far off; unticking it makes the adjoint exact again.

# %%
explorer.rank.value = 20
adjoint_error = np.asarray(explorer.figure.data[error_trace("adjoint")].y)
assert adjoint_error[-1] > 1e-6 and explorer.figure.data[error_trace("finite differences")].y[-1] > 1
explorer.full_rank.value = False
adjoint_error = np.asarray(explorer.figure.data[error_trace("adjoint")].y)
reference = measure(gradient_problem(60, 30, 20), assume_full_rank=False, tolerances=tolerances)
np.testing.assert_allclose(adjoint_error, reference.error["adjoint"], rtol=1e-6, atol=1e-15)
assert adjoint_error[-1] < 1e-8

# %% [markdown]
# ## Exercises
#
# 1. In section 1, replace the loss by $\mu(x) = \langle w, x\rangle$ (drop the quadratic term).
#    Predict: does $\partial\mu/\partial b$ change? Does $\partial\mu/\partial A$?
# 2. In section 3, let $\lambda \to 0$ on the rank-deficient matrix. Predict what happens to
#    $s = (g - A^\top p)/\lambda^2$ and to $\partial\mu/\partial\lambda = -2\lambda\langle s, x\rangle$.
# 3. In section 4, perturb $A$ along a direction that *raises* its rank ($\dot A$ random, not through the
#    factors). Predict whether the finite differences still converge as $h \to 0$.
#
# The answers are in the next cell (collapsed in JupyterLab; click to expand), and checked there.

# %% jupyter={"source_hidden": true}
# 1. Both change: g = w + x becomes g = w, and both derivatives are linear in g.
A = spectrum_matrix(40, 12, np.logspace(0, -1, 12))
b = rng.standard_normal(40)
w = rng.standard_normal(12)
linear = jax.grad(lambda b: jnp.dot(w, lstsq(A, b, options=TIGHT)[0]))(b)
quadratic = jax.grad(lambda b: loss(A, b))(b)
assert relative_error(linear, np.linalg.pinv(A).T @ w) < 1e-9 and relative_error(linear, quadratic) > 1e-3
# 2. s = N^{-1} g keeps the null-space part of g divided by lambda^2, so |s| grows like 1/lambda^2;
#    but x lies in the row space, orthogonal to that part, and x(lambda) = A^+ b + O(lambda^2): so
#    dmu/dlambda = -2 lambda <s, x> goes to 0 linearly.
A_def = spectrum_matrix(30, 12, np.logspace(0, -1, 6))
b = rng.standard_normal(30)
w = rng.standard_normal(12)
slopes = [abs(float(jax.grad(loss, argnums=2)(A_def, b, lam))) for lam in (1e-1, 1e-3)]
s_norms = [np.linalg.norm(np.linalg.solve(A_def.T @ A_def + lam**2 * np.eye(12), w)) for lam in (1e-1, 1e-3)]
assert slopes[1] < 0.1 * slopes[0] and s_norms[1] > 100 * s_norms[0]
# 3. No: a rank-raising perturbation makes A^+ jump, and the difference quotients grow like 1/h.
L, R = rng.standard_normal((30, 5)), rng.standard_normal((12, 5))
A_low, dA = L @ R.T, rng.standard_normal((30, 12))
quotients = [abs(float(loss(A_low + h * dA, b) - loss(A_low, b))) / h for h in (1e-3, 1e-5)]
assert quotients[1] > 10 * quotients[0]
