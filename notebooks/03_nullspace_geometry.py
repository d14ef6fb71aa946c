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

from lsqlab.lab.geometry import MANIFOLDS, step_parts
from lsqlab.nullspace import transform
from lsqlab.lab.problems import equality_qp
from lsqlab.lab.smoke import scaled
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
# ## Tangent spaces and the projector $I - J^+J$, from one solve
#
# **Assumptions:** $c: \mathbb{R}^p \to \mathbb{R}^m$ smooth, $m < p$, $J = \partial c/\partial\theta$ of
# full row rank near the constraint set $\{c = 0\}$, which is then a manifold of dimension $p - m$ whose
# tangent space at $\theta$ is the null space of $J$. The orthogonal projector onto it is
# $P = I - J^+J$, and $Pu = u - z$ with $z = \mathrm{LstSq}(J, Ju)$: one minimum-norm solve on the wide
# $J$, with $J$ applied as `jax.jvp` and $J^\top$ as its transpose, never formed.

# %%
from lsqlab.nullspace import project


def sphere_and_plane(theta):
    """Two constraints in R^5: the unit sphere and a hyperplane. Their set is a 3-sphere."""
    return jnp.array([theta @ theta - 1.0, jnp.sum(theta) - 0.5])


rng_teach = np.random.default_rng(3)
theta = jnp.asarray(rng_teach.standard_normal(5))
u = jnp.asarray(rng_teach.standard_normal(5))
projected, info = project(sphere_and_plane, theta, u)  # gamma = 0: the tangent part only
J = np.asarray(jax.jacfwd(sphere_and_plane)(theta))
P = np.eye(5) - np.linalg.pinv(J) @ J
np.testing.assert_allclose(np.asarray(projected), P @ np.asarray(u), atol=1e-10)
np.testing.assert_allclose(P @ P, P, atol=1e-12)  # idempotent
np.testing.assert_allclose(P, P.T, atol=1e-12)  # orthogonal
np.testing.assert_allclose(J @ np.asarray(projected), 0, atol=1e-10)  # tangent
again, _ = project(sphere_and_plane, theta, projected)
np.testing.assert_allclose(np.asarray(again), np.asarray(projected), atol=1e-10)
print(f"one LSMR solve of {int(info.iterations)} iterations ({info.reason}); J d = 0 to 1e-10")

# %% [markdown]
# ## The correction $-\gamma J^+c$ is a Gauss–Newton step
#
# Off the constraint set, Newton's method for the underdetermined system $c(\theta) = 0$ linearises
# $c(\theta + d) \approx c + Jd$ and takes the smallest $d$ with $c + Jd = 0$: $d = -J^+c$. So with
# $\gamma = 1$ and no loss, repeating the step converges *quadratically* to the constraint set (the
# violation roughly squares each step), and with $\gamma < 1$ the violation shrinks by about
# $1 - \gamma$ per step: the "landing" rate.

# %%
def violation_history(gamma, steps=6):
    theta = jnp.asarray([1.4, -0.3, 0.8, 0.1, 0.2])
    history = []
    for _ in range(steps):
        history.append(float(jnp.linalg.norm(sphere_and_plane(theta))))
        d, _ = project(sphere_and_plane, theta, jnp.zeros(5), gamma=gamma)
        theta = theta + d
    return np.array(history)


newton, landing = violation_history(1.0), violation_history(0.5)
print("gamma = 1  :", np.array2string(newton, precision=1))
print("gamma = 0.5:", np.array2string(landing, precision=1))
assert newton[4] < 1e-6 and newton[4] < newton[3] ** 1.5  # quadratic once close
ratios = landing[3:] / landing[2:-1]
assert np.all(np.abs(ratios - 0.5) < 0.05)  # linear, rate 1 - gamma

# %% [markdown]
# ## Fixed points are KKT points
#
# If $\theta$ is feasible and the projected gradient vanishes, $(I - J^+J)\nabla L = 0$, then
# $\nabla L = J^\top\mu$ with $\mu = J^{+\top}\nabla L$: the Lagrange (KKT) conditions. Minimising a
# quadratic $\frac12\theta^\top Q\theta$ on the unit sphere, the KKT points are the eigenvectors of $Q$,
# and projected descent from a generic start finds the one of the smallest eigenvalue.

# %%
Q = np.diag([3.0, 2.0, 1.5, 0.7, 0.4]) + 0.1 * np.ones((5, 5))
unit_sphere = lambda theta: jnp.array([theta @ theta - 1.0])
theta = jnp.asarray(np.ones(5) / np.sqrt(5))


@jax.jit
def descent_step(theta):
    d, _ = project(unit_sphere, theta, -0.2 * (Q @ theta), gamma=0.5)
    return theta + d


for _ in range(scaled(400, 400)):
    theta = descent_step(theta)
gradient = Q @ np.asarray(theta)
multiplier = np.linalg.pinv(np.asarray(jax.jacfwd(unit_sphere)(theta))).T @ gradient
eigenvalues, eigenvectors = np.linalg.eigh(Q)
print(f"multiplier {multiplier[0] / 2:.6f} (Q theta = mu theta), smallest eigenvalue {eigenvalues[0]:.6f}")
assert np.linalg.norm(gradient - np.asarray(jax.jacfwd(unit_sphere)(theta)).T @ multiplier) < 1e-8
assert abs(abs(np.asarray(theta) @ eigenvectors[:, 0]) - 1) < 1e-8

# %% [markdown]
# ## Against a penalty and against tangent-only steps
#
# A quadratic penalty $L + \frac{\rho}{2}\|c\|^2$ trades the constraint against the loss: it settles
# where the two gradients balance, at a violation of order $1/\rho$. Tangent-only steps ($\gamma = 0$)
# stay tangent, but on a curved set each step leaves it to second order and the errors accumulate. The
# null-space step with $\gamma > 0$ removes half of the violation at every step, so only the
# second-order error of the latest steps remains, and it vanishes as the steps shrink.

# %%
def final_violation(method, steps=200):
    theta = jnp.asarray(np.ones(5) / np.sqrt(5))
    for _ in range(steps):
        if method == "penalty":
            grad = Q @ theta + 10.0 * unit_sphere(theta)[0] * 2 * theta
            theta = theta - 0.02 * grad
        else:
            d, _ = project(unit_sphere, theta, -0.02 * (Q @ theta), gamma=0.5 if method == "null-space" else 0.0)
            theta = theta + d
    return float(jnp.abs(unit_sphere(theta)[0]))


violations = {name: final_violation(method) for name, method in
              (("null-space", "null-space"), ("tangent only", "tangent"), ("penalty (rho = 10)", "penalty"))}
for method, value in violations.items():
    print(f"{method:<20} |c| after 200 steps: {value:.1e}")
assert violations["null-space"] < 0.01 * min(violations["tangent only"], violations["penalty (rho = 10)"])

# %% [markdown]
# ## With Adam, the order of projection and optimiser matters
#
# Adam rescales its input per coordinate, so a tangent input gives a step that is no longer tangent.
# `lsqlab.nullspace.transform` offers three orders: `"after"` projects only Adam's output (steps stay
# tangent, but Adam's rescaled raw gradient does not vanish at the KKT point, so it stops at a wrong
# point), `"before"` projects only the raw gradient (the published order: it finds the KKT point, but
# the rescaled step leaves the tangent space and a violation remains), and `"both"` (the default)
# projects the gradient, runs Adam, and projects its output again, with the correction added outside
# Adam. Measured on a linear-equality-constrained quadratic program with a known KKT solution, at two
# learning rates (at the larger one Adam's constant-size steps also jitter around the optimum, so even
# `"both"` stays 1e-3 away, but its violation stays at rounding level):

# %%
qp = equality_qp(np.random.default_rng(1))  # 12 variables, 4 linear equality constraints
kkt = qp.solution
qp_loss, qp_constraint = qp.loss, qp.constraint


def run_order(order, learning_rate, steps=4000):
    optimizer = transform(optax.adam(learning_rate), qp_constraint, gamma=0.5, order=order)

    def body(carry, _):
        x, state = carry
        updates, state = optimizer.update(jax.grad(qp_loss)(x), state, x)
        return (x + updates, state), None

    x0 = jnp.zeros(12)
    (x, _), _ = jax.lax.scan(body, (x0, optimizer.init(x0)), length=steps)
    return np.linalg.norm(np.asarray(x) - kkt) / np.linalg.norm(kkt), float(jnp.linalg.norm(qp_constraint(x)))


orders = {(order, lr): run_order(order, lr) for lr in (0.01, 0.05) for order in ("both", "before", "after")}
for (order, lr), (error, violation) in orders.items():
    print(f"learning rate {lr}, order = {order!r:9} relative error to KKT {error:.1e}   violation {violation:.1e}")
assert orders["both", 0.01][0] < 1e-8 and orders["both", 0.01][1] < 1e-12
assert orders["after", 0.01][0] > 0.2 and orders["after", 0.01][1] < 1e-12
assert orders["before", 0.05][1] > 2e-4 and orders["both", 0.05][1] < 1e-12

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

# %% [markdown]
# ## What a step costs
#
# Count in products with $J$: one JVP ($Jv$) and one VJP ($J^\top w$) of the constraint make a *pair*,
# and a pair costs about what the forward and backward pass of $c$ cost. A step linearises $c$ once
# (one forward pass, shared by every product of the step); each of its solves then needs one JVP for
# $Ju$ and, by solver:
#
# | solver (`transform(..., gram=)`) | products per solve | when |
# |---|---|---|
# | LSMR from 0 (`None`, the default) | 1 VJP + one pair per iteration | any $J$, any rank, exact to its tolerance |
# | Gram-form CG (`GramCG`) | one pair to start from the last step's multipliers $y$, then one pair per iteration | $J$ of full row rank; consecutive steps close |
# | dense Gram form (`GramDense`) | $m$ VJPs in one batched pass, then none: $J$ and $(JJ^\top)^+$ serve both solves | few constraints ($m$ up to a few hundred) |
# | closed form (a `Selection`) | none: a mask multiply | masks, fixed coordinates |
#
# Order "both" runs two solves per step, "after" one. Warm starts are safe only on the multipliers:
# CG from any $y_0$ converges to the same $z = J^\top y$ in the row space of $J$, while LSMR started
# from $z_0 \ne 0$ returns $z_0 + J^+(r - Jz_0)$ and keeps the part of $z_0$ outside the row space.
#
# Measured (`benchmarks/bench_nullspace.py`, 2-core CPU, float32; the numbers and the machine are in
# `benchmarks/README.md`): on the equivariance application (m = 960, a pair costs 0.8 plain steps
# because the constraint runs the network on as many images as a training batch) LSMR capped at 20
# iterations per solve costs about 54 plain steps; CG warm-started with a rank-128 Nystrom
# preconditioner, 3 iterations per solve, about 13-15, at the same $\|c\|$ and accuracy; 1 iteration
# per solve with a rank-32 preconditioner about 8.5, with a 17x larger violation. A mask on a million
# parameters costs 1.1 plain steps in closed form and 7.6 through LSMR. The three solvers, on the
# training run above:

# %%
from lsqlab import multipliers  # noqa: E402

solvers = {"LSMR from 0": None, "Gram-form CG, warm": multipliers.GramCG(rtol=1e-10, maxiter=5),
           "dense Gram form": multipliers.GramDense()}
w_start = jnp.asarray(np.random.default_rng(1).standard_normal(8))
ends = {}
for name, gram in solvers.items():
    solver_tx = transform(optax.sgd(0.05), constraint, gamma=0.5, gram=gram)

    def solver_step(carry, _, solver_tx=solver_tx):
        w_now, solver_state = carry
        updates, solver_state = solver_tx.update(jax.grad(loss)(w_now), solver_state, w_now)
        return (optax.apply_updates(w_now, updates), solver_state), solver_state.info.iterations

    (ends[name], _), iterations = jax.jit(
        lambda w0, solver_tx=solver_tx, solver_step=solver_step: jax.lax.scan(
            solver_step, (w0, solver_tx.init(w0)), None, steps))(w_start)
    print(f"{name:<20} iterations per step {float(iterations.mean()):4.1f}   "
          f"|c| at the end {float(jnp.linalg.norm(constraint(ends[name]))):.1e}")
for name in solvers:
    np.testing.assert_allclose(ends[name], ends["LSMR from 0"], atol=1e-8)  # the same steps, whatever the solver

# %% [markdown]
# ## Exercises
#
# 1. In "The correction is a Gauss–Newton step", start much farther from the set (multiply the start by
#    5). Predict: is the convergence with $\gamma = 1$ still quadratic from the first step?
# 2. In "Against a penalty", raise $\rho$ from 10 to 1000. Predict the penalty's final violation, and
#    what happens with the step size 0.02 kept.
# 3. Remove the sum-to-one-half constraint from the training run. Predict where the weights end up.
#
# Answers (collapsed in JupyterLab; click to expand), checked:

# %% jupyter={"source_hidden": true}
# 1. No: far away the linearisation is poor; the first steps shrink |c| roughly by a constant factor,
#    and the quadratic phase starts once theta is close (then errors square).
far = jnp.asarray([7.0, -1.5, 4.0, 0.5, 1.0])
history = []
for _ in range(8):
    history.append(float(jnp.linalg.norm(sphere_and_plane(far))))
    far = far + project(sphere_and_plane, far, jnp.zeros(5), gamma=1.0)[0]
assert history[1] > 0.1 * history[0] and history[-1] < 1e-8
# 2. Much smaller (|c| ~ 1/rho once converged; here about 40 times smaller after 2000 steps); but the
#    penalty's curvature 4 rho |theta|^2 times the step 0.02 exceeds 2: gradient descent diverges
#    unless the step shrinks with 1/rho, and then it needs many more steps.
def penalty_run(rho, lr, steps=200):
    theta = jnp.asarray(np.ones(5) / np.sqrt(5))
    for _ in range(steps):
        theta = theta - lr * (Q @ theta + rho * unit_sphere(theta)[0] * 2 * theta)
    return float(jnp.abs(unit_sphere(theta)[0]))
assert not np.isfinite(penalty_run(1000.0, 0.02)) or penalty_run(1000.0, 0.02) > 1
assert penalty_run(1000.0, 0.0002, steps=2000) < 0.1 * penalty_run(10.0, 0.02)
# 3. On the unit sphere the minimiser of a least-squares loss is the unit vector that best fits the
#    data: the KKT condition X^T (X w - y) / n = mu w with |w| = 1 (checked as a projected-gradient zero).
only_sphere = lambda w: jnp.array([jnp.sum(w**2) - 1.0])
sphere_optimizer = transform(optax.sgd(0.05), only_sphere, gamma=0.5)
w_s = jnp.asarray(rng.standard_normal(8))
sphere_state = sphere_optimizer.init(w_s)
for _ in range(scaled(600, 300)):
    w_s = w_s + sphere_optimizer.update(jax.grad(loss)(w_s), sphere_state, w_s)[0]
tangent_gradient, _ = project(only_sphere, w_s, jax.grad(loss)(w_s))
assert abs(float(w_s @ w_s) - 1) < 1e-8 and float(jnp.linalg.norm(tangent_gradient)) < 1e-6
