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
# # A tour of lsqlab
#
# `lsqlab.lstsq(A, b, damp=λ)` solves
#
# $$x^\star = \arg\min_x \|Ax - b\|^2 + \lambda^2 \|x\|^2$$
#
# with LSMR, touching $A$ only through products $v \mapsto Av$ (and $u \mapsto A^\top u$, which JAX
# derives). Its derivatives with respect to $b$, $A$ (or whatever $A$ is built from) and $\lambda$ are
# exact adjoint formulas that cost about two more solves, so a least-squares solve can sit inside any
# differentiable model. This tour solves one problem, checks a gradient, and then lets you turn the
# damping of a small regression by hand.

# %%
import jax

jax.config.update("jax_enable_x64", True)  # before any array is created

import jax.numpy as jnp
import numpy as np

from lsqlab import SolverOptions, lstsq
from lsqlab.lab.regression import fit_damped, fit_weights, make_problem, rmse
from lsqlab.lab.smoke import scaled
from lsqlab.widgets import DampingExplorer

# %% [markdown]
# ## One solve
#
# A tall random problem, solved matrix-free and compared with a dense reference.

# %%
m, n = scaled((2000, 300), (200, 30))
key_A, key_b = jax.random.split(jax.random.key(0))
A = jax.random.normal(key_A, (m, n))
b = jax.random.normal(key_b, (m,))

x, info = lstsq(A, b, options=SolverOptions(atol=1e-12, btol=1e-12))
x_dense = jnp.linalg.lstsq(A, b)[0]
print(f"{int(info.iterations)} iterations, stop code {int(info.istop)}, ||r|| = {float(info.normr):.4f}")
assert jnp.allclose(x, x_dense, rtol=1e-8, atol=1e-10)

# %% [markdown]
# ## One gradient
#
# `jax.grad` goes through the solve. We check the derivative of a scalar loss with respect to the
# matrix along a random direction $E$ against a central finite difference
# $\big(L(A + hE) - L(A - hE)\big) / 2h$.


# %%
def loss(A):
    x, _ = lstsq(A, b, damp=0.1, options=SolverOptions(atol=1e-12, btol=1e-12))
    return jnp.sum(x**2)


E = jax.random.normal(jax.random.key(1), A.shape)
h = 1e-5
directional = jnp.vdot(jax.grad(loss)(A), E)
finite_difference = (loss(A + h * E) - loss(A - h * E)) / (2 * h)
print(f"adjoint: {float(directional):.10f}   finite difference: {float(finite_difference):.10f}")
assert jnp.allclose(directional, finite_difference, rtol=1e-6)

# %% [markdown]
# ## Damping by hand
#
# Thirty noisy samples of a smooth signal, fitted with thirty Gaussian bumps:
# $w(\lambda) = \arg\min_w \|\Phi w - y\|^2 + \lambda^2\|w\|^2$. Small $\lambda$ chases the noise
# (large $\|w\|$), large $\lambda$ flattens the curve; the held-out error is smallest in between.
# Move the slider.

# %%
problem = make_problem(seed=0)
explorer = DampingExplorer(problem, damp=1e-3)
slider = explorer.slider
explorer

# %% [markdown]
# The same thing without the mouse: setting the slider refits and redraws, and the drawn curve is the
# plain function's output.

# %%
before = np.array(explorer.figure.data[1].y)
slider.value = 1.0
after = np.array(explorer.figure.data[1].y)
assert not np.allclose(before, after)
np.testing.assert_allclose(after, fit_damped(problem, 1.0).curve)

# %% [markdown]
# Because the fit is differentiable in $\lambda$, so is the held-out error: the slope that tells you
# which way to move the slider, checked once more against a finite difference.

# %%
features_train = problem.features(problem.x_train)
features_test = problem.features(problem.x_test)


def held_out_error(log_damp):
    weights = fit_weights(features_train, jnp.asarray(problem.y_train), jnp.exp(log_damp))
    return rmse(weights, features_test, jnp.asarray(problem.y_test))


log_damp = jnp.log(0.1)
slope = jax.grad(held_out_error)(log_damp)
h = 1e-4
slope_fd = (held_out_error(log_damp + h) - held_out_error(log_damp - h)) / (2 * h)
print(f"d(held-out RMSE)/d(log λ) at λ = 0.1: {float(slope):.6f} (finite difference {float(slope_fd):.6f})")
assert jnp.allclose(slope, slope_fd, rtol=1e-5)

# %% [markdown]
# ## Where to go next
#
# The lab is a path of three notebooks, each a derivation you can check and a widget you can move,
# followed by four applications of the null-space method, each against the usual alternatives with
# recorded results over several seeds:
#
# 1. [`01_values`](01_values.ipynb): least squares as a function; why not the normal equations;
#    Golub–Kahan bidiagonalisation and LSMR built step by step; stopping rules; operators that are not
#    matrices; preconditioning; LSMR beside CG on the normal equations.
# 2. [`02_gradients`](02_gradients.ipynb): the adjoint rules derived for tall, wide, damped and
#    rank-deficient problems, each checked against dense formulas and finite differences; why unrolling
#    the iterations is wasteful; tolerance and gradient accuracy; forward mode and Hessian-vector products.
# 3. [`03_nullspace_geometry`](03_nullspace_geometry.ipynb): constraint manifolds, the projector
#    $I - J^+J$ from one solve, the correction as a Gauss–Newton step, KKT points, the penalty method
#    and the order of projection and Adam; a live monitor of a constrained training run.
# 4. [`04_equivariance`](04_equivariance.ipynb): a digit classifier made rotation-invariant by a
#    constraint on a few collocation images, beside augmentation, a penalty, an augmented Lagrangian
#    and a group-averaged network; whether the invariance reaches images it never saw.
# 5. [`05_sparsity`](05_sparsity.ipynb): pruning as the constraint $\theta_S = 0$, where the null-space
#    step is a hard mask in closed form; accuracy against the surviving fraction of the weights.
# 6. [`06_conservative_scores`](06_conservative_scores.ipynb): score models for diffusion sampling made
#    conservative (a symmetric Jacobian) by the null-space method, beside an energy model and a penalty.
# 7. [`07_gp_hyperparameters`](07_gp_hyperparameters.ipynb): Gaussian-process hyperparameters tuned
#    for held-out prediction through the adjoint of a least-squares solve, on Mauna Loa CO2.
