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
# # The geometry of the null-space method
#
# To keep $c(\theta) = 0$ while descending a loss, the null-space method replaces each update $u$ by
#
# $$d = (I - J^+ J)\,u - \gamma J^+ c, \qquad J = \partial c / \partial\theta,$$
#
# its part along the constraint set plus a step back towards it, computed with one least-squares solve
# on $J$. Below you can watch this step on curves and surfaces, beside a quadratic penalty (which
# settles off the constraint set) and plain tangent steps (which drift off a curved one), and then
# monitor a small constrained training run.

# %%
import jax

jax.config.update("jax_enable_x64", True)  # before any array is created

import jax.numpy as jnp
import numpy as np
import optax

from lsqlab.geometry import MANIFOLDS, step_parts
from lsqlab.nullspace import transform
from lsqlab.smoke import scaled
from lsqlab.widgets.manifold_explorer import ARROW_TRACE, TRAJECTORY_TRACE, ManifoldExplorer
from lsqlab.widgets.training_monitor import TrainingMonitor

# %% [markdown]
# ## One step, taken apart
#
# Green: the raw update $u = -\eta\nabla f$; purple: its tangent part $(I - J^+J)u$; red: the
# correction $-\gamma J^+c$, along the constraint normal; black: the step. Blue is the null-space
# trajectory, orange the penalty method, grey the tangent-only steps. Choose "sphere", "torus" or a
# surface of your own to see the same in 3-D.

# %%
explorer = ManifoldExplorer("circle", step=0.1, gamma=0.5, penalty=2.0, steps=30)
explorer

# %% [markdown]
# By code: move $\gamma$ and the shown iterate; the drawn tangent part stays orthogonal to the drawn
# correction, and the null-space trajectory ends on the circle while the penalty one does not.


# %%
def drawn_vector(part):
    trace = explorer.figure.data[ARROW_TRACE[part]]
    return np.array([trace.x[1] - trace.x[0], trace.y[1] - trace.y[0]])


explorer.gamma.value = 0.8
explorer.shown_step.value = 2
tangent, normal = drawn_vector("tangent"), drawn_vector("normal")
assert abs(tangent @ normal) < 1e-10 * np.linalg.norm(tangent) * np.linalg.norm(normal)
null_space_end = np.array([explorer.figure.data[TRAJECTORY_TRACE["null-space"]][axis][-1] for axis in "xy"])
penalty_end = np.array([explorer.figure.data[TRAJECTORY_TRACE["penalty"]][axis][-1] for axis in "xy"])
assert abs(null_space_end @ null_space_end - 1) < 1e-5 < abs(penalty_end @ penalty_end - 1)
shown = np.array([explorer.figure.data[TRAJECTORY_TRACE["null-space"]][axis][2] for axis in "xy"])
np.testing.assert_allclose(normal, step_parts(MANIFOLDS["circle"], shown, 0.1, 0.8).normal, atol=1e-12)

# %% [markdown]
# ## A constrained training run
#
# Linear regression whose weights must lie on the unit sphere and sum to one half,
# $c(w) = (\|w\|^2 - 1,\ \sum_i w_i - \tfrac12)$, trained with SGD wrapped by
# `lsqlab.nullspace.transform`. The monitor draws the loss, $\|c\|$ and the LSMR iterations per step
# while the loop runs.

# %%
rng = np.random.default_rng(0)
X = jnp.asarray(rng.standard_normal((200, 8)))
y = X @ jnp.asarray(rng.standard_normal(8)) + 0.1 * jnp.asarray(rng.standard_normal(200))


def loss(w):
    return jnp.mean((X @ w - y) ** 2)


def constraint(w):
    return jnp.array([jnp.sum(w**2) - 1.0, jnp.sum(w) - 0.5])


optimizer = transform(optax.sgd(0.05), constraint, gamma=0.5)


@jax.jit
def train_step(w, state):
    value, grad = jax.value_and_grad(loss)(w)
    updates, state = optimizer.update(grad, state, w)
    return optax.apply_updates(w, updates), state, value


steps = scaled(300, 40)
monitor = TrainingMonitor(steps)
monitor

# %%
w = jnp.asarray(rng.standard_normal(8))
state = optimizer.init(w)
for step in range(steps):
    w, state, value = train_step(w, state)
    monitor.log(step, loss=value, violation=state.info.violation, iterations=state.info.iterations)

# %% [markdown]
# The monitor drew every logged step, and the constraint holds at the end.

# %%
assert len(monitor.figure.data[1].y) == steps
assert monitor.figure.data[1].y[-1] < 1e-8 and float(jnp.linalg.norm(constraint(w))) < 1e-8
