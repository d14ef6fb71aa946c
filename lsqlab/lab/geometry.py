"""Constraint manifolds c(theta) = 0 in 2-D and 3-D, a quadratic loss over them, and three descents.

For the loss f(theta) = 1/2 sum_i h_i (theta_i - a_i)^2, the constraint Jacobian J = dc/dtheta (one
row: c is scalar here) and the raw update u = -eta grad f, one step of

  * the null-space method is  d = (I - J^+ J) u - gamma J^+ c   (:func:`lsqlab.nullspace.project`),
  * plain projected descent is d = (I - J^+ J) u                  (the same with gamma = 0: it moves
    along the tangent and drifts off a curved manifold),
  * quadratic-penalty descent is d = -eta grad(f + mu/2 ||c||^2) = u - eta mu J^T c  (it settles at a
    point off the manifold, at a distance that shrinks like 1/mu, and is stable only for small eta mu).

:func:`step_parts` splits one null-space step into its tangent part (orthogonal to grad c) and its
normal part (parallel to grad c); :func:`descend` runs all three methods from one start point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab.lab.expressions import parse
from lsqlab.nullspace import project

MAX_STEPS = 200  # trajectories are computed this long once (one compilation) and cut to the steps asked
BOX = 2.5  # plots show [-BOX, BOX]^d; a start point outside is "far off"
METHODS = ("null-space", "penalty", "tangent only")
VARIABLES = ("x", "y", "z")


@dataclass(frozen=True, eq=False)
class Manifold:
    """The set c(theta) = 0 of a scalar function of theta in R^dim (dim 2: a curve, 3: a surface)."""

    name: str
    dim: int
    scalar_constraint: Callable[[jax.Array], jax.Array] = field(repr=False)

    def constraint(self, theta: jax.Array) -> jax.Array:
        """c(theta) as a 1-D array of one entry (the form :func:`lsqlab.nullspace.project` takes)."""
        return jnp.atleast_1d(self.scalar_constraint(theta))


def _torus(theta: jax.Array, major: float = 1.2, minor: float = 0.5) -> jax.Array:
    return (jnp.sqrt(theta[0] ** 2 + theta[1] ** 2) - major) ** 2 + theta[2] ** 2 - minor**2


MANIFOLDS: dict[str, Manifold] = {
    manifold.name: manifold
    for manifold in (
        Manifold("circle", 2, lambda t: t[0] ** 2 + t[1] ** 2 - 1),
        Manifold("ellipse", 2, lambda t: (t[0] / 1.6) ** 2 + (t[1] / 0.8) ** 2 - 1),
        Manifold("sphere", 3, lambda t: t[0] ** 2 + t[1] ** 2 + t[2] ** 2 - 1),
        Manifold("torus", 3, _torus),
    )
}


@lru_cache(maxsize=32)  # the same object for the same text: its compiled steps are reused
def user_manifold(expression: str, dim: int) -> Manifold:
    """The manifold ``expression = 0`` in the variables x, y (and z for dim 3), e.g. ``"x**4 + y**4 - 1"``.

    The formula is checked by :func:`lsqlab.lab.expressions.parse` (numbers, + - * /, ** with a small
    literal exponent, ``pi`` and ``sin cos tan exp log sqrt abs tanh``; bounded length and nesting;
    variable-free parts finite); anything else raises ValueError naming it.
    """
    if dim not in (2, 3):
        raise ValueError(f"a user manifold lives in 2 or 3 dimensions, got {dim}")
    formula = parse(expression, VARIABLES[:dim])

    def scalar_constraint(theta: jax.Array) -> jax.Array:
        return jnp.asarray(formula(*(theta[i] for i in range(dim))), theta.dtype)

    return Manifold(f"c = {formula.text}", dim, scalar_constraint)


@dataclass(frozen=True)
class QuadraticLoss:
    """f(theta) = 1/2 sum_i h_i (theta_i - a_i)^2, minimised at ``center`` (off the manifolds)."""

    center: tuple[float, ...]
    curvature: tuple[float, ...]

    def __call__(self, theta: jax.Array) -> jax.Array:
        a, h = jnp.asarray(self.center, theta.dtype), jnp.asarray(self.curvature, theta.dtype)
        return 0.5 * jnp.sum(h * (theta - a) ** 2)


LOSSES: dict[int, QuadraticLoss] = {
    2: QuadraticLoss((1.6, 1.2), (1.0, 3.0)),
    3: QuadraticLoss((1.4, 0.9, 0.8), (1.0, 3.0, 2.0)),
}


class StepParts(NamedTuple):
    """One null-space step at theta, split up (rows of shape (dim,)).

    raw: u = -eta grad f.  tangent: (I - J^+ J) u.  normal: -gamma J^+ c.  step: tangent + normal.
    constraint_normal: grad c / ||grad c||.
    """

    raw: np.ndarray
    tangent: np.ndarray
    normal: np.ndarray
    step: np.ndarray
    constraint_normal: np.ndarray


class Trajectories(NamedTuple):
    """Iterates theta_0 .. theta_K (shape (K + 1, dim)) of each method, and c along the null-space one."""

    null_space: np.ndarray
    penalty: np.ndarray
    tangent_only: np.ndarray
    violation: np.ndarray  # |c(theta_k)| along the null-space trajectory

    def by_method(self) -> dict[str, np.ndarray]:
        return dict(zip(METHODS, (self.null_space, self.penalty, self.tangent_only)))


def check_start(manifold: Manifold, start: np.ndarray) -> None:
    """Raise ValueError when ``start`` is outside the plotted box, c is not finite there or grad c = 0."""
    start = np.asarray(start, np.float64)
    if start.shape != (manifold.dim,) or not np.all(np.isfinite(start)):
        raise ValueError(f"the start point needs {manifold.dim} finite coordinates")
    if np.max(np.abs(start)) > BOX:
        raise ValueError(
            f"the start point {tuple(start.round(3))} is far off: keep each coordinate in [-{BOX}, {BOX}]"
        )
    c, grad_c = _value_and_normal(manifold)(jnp.asarray(start))
    if not np.isfinite(float(c)) or not np.all(np.isfinite(np.asarray(grad_c))):
        raise ValueError("c or its gradient is not finite at the start point")
    if float(jnp.linalg.norm(grad_c)) < 1e-8:
        raise ValueError("grad c = 0 at the start point: J is singular there and J^+ c is undefined")


def check_step(step: float, gamma: float, penalty: float) -> None:
    """Raise ValueError for a step size <= 0, gamma outside [0, 1] or a negative penalty weight."""
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"the step size must be a positive number, got {step}")
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    if not (np.isfinite(penalty) and penalty >= 0):
        raise ValueError(f"the penalty weight must be >= 0, got {penalty}")


def step_parts(manifold: Manifold, theta: np.ndarray, step: float, gamma: float) -> StepParts:
    """The parts of one null-space step at ``theta`` (see :class:`StepParts`)."""
    raw, tangent, full, grad_c = _parts(manifold)(jnp.asarray(theta, jnp.float64), step, gamma)
    tangent, full = np.asarray(tangent), np.asarray(full)
    return StepParts(np.asarray(raw), tangent, full - tangent, full, np.asarray(grad_c / jnp.linalg.norm(grad_c)))


def descend(
    manifold: Manifold, start: np.ndarray, steps: int, step: float, gamma: float, penalty: float
) -> Trajectories:
    """``steps`` iterations of the null-space, penalty and tangent-only methods from ``start``."""
    if not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"the number of steps must lie in [0, {MAX_STEPS}], got {steps}")
    null_space, penalty_path, tangent_only, violation = _trajectories(manifold)(
        jnp.asarray(start, jnp.float64), step, gamma, penalty
    )
    paths = (null_space, penalty_path, tangent_only, violation)
    return Trajectories(*(np.asarray(path[: steps + 1]) for path in paths))


def grid_values(manifold: Manifold, points: int) -> tuple[np.ndarray, np.ndarray]:
    """c and f on a ``points``^dim grid over [-BOX, BOX]^dim (axis order x, y[, z], 'ij' indexing)."""
    axes = [jnp.linspace(-BOX, BOX, points)] * manifold.dim
    flat = jnp.stack([g.ravel() for g in jnp.meshgrid(*axes, indexing="ij")], axis=1)
    loss = LOSSES[manifold.dim]
    shape = (points,) * manifold.dim
    c = jax.vmap(manifold.scalar_constraint)(flat).reshape(shape)
    return np.asarray(c), np.asarray(jax.vmap(loss)(flat).reshape(shape))


@lru_cache(maxsize=32)
def _value_and_normal(manifold: Manifold):
    return jax.jit(jax.value_and_grad(manifold.scalar_constraint))


@lru_cache(maxsize=32)
def _parts(manifold: Manifold):
    grad_f = jax.grad(LOSSES[manifold.dim])

    @jax.jit
    def parts(theta, step, gamma):
        raw = -step * grad_f(theta)
        tangent, _ = project(manifold.constraint, theta, raw, gamma=0.0)
        full, _ = project(manifold.constraint, theta, raw, gamma=gamma)
        return raw, tangent, full, jax.grad(manifold.scalar_constraint)(theta)

    return parts


@lru_cache(maxsize=32)
def _trajectories(manifold: Manifold):
    loss = LOSSES[manifold.dim]
    grad_penalized = jax.grad(lambda t, mu: loss(t) + 0.5 * mu * manifold.scalar_constraint(t) ** 2)

    @jax.jit
    def trajectories(start, step, gamma, penalty):
        def one_step(thetas, _):
            null_space, penalized, tangent_only = thetas
            raw = -step * jax.grad(loss)(null_space)
            d_null, _ = project(manifold.constraint, null_space, raw, gamma=gamma)
            d_tangent, _ = project(manifold.constraint, tangent_only, -step * jax.grad(loss)(tangent_only), gamma=0.0)
            penalized = penalized - step * grad_penalized(penalized, penalty)
            new = (null_space + d_null, penalized, tangent_only + d_tangent)
            return new, new

        _, paths = jax.lax.scan(one_step, (start, start, start), length=MAX_STEPS)
        paths = [jnp.concatenate([start[None], path]) for path in paths]
        violation = jnp.abs(jax.vmap(manifold.scalar_constraint)(paths[0]))
        return (*paths, violation)

    return trajectories
