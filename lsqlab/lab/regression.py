"""Damped least-squares regression of a noisy 1-D signal on Gaussian RBF features.

The mathematics behind the tour's damping widget: the weights

    w(lambda) = argmin_w ||Phi w - y||^2 + lambda^2 ||w||^2

are one call of :func:`lsqlab.lstsq.lstsq`, so they (and the held-out error) are differentiable in
``lambda``. Small ``lambda`` over-fits (large ``||w||``), large ``lambda`` over-smooths.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab.lstsq import lstsq
from lsqlab.solver import SolverOptions


def true_signal(x: np.ndarray) -> np.ndarray:
    """The noiseless function the regression tries to recover."""
    return np.sin(2 * np.pi * x) + 0.5 * x


@dataclass(frozen=True)
class RegressionProblem:
    """Training and held-out samples of ``true_signal`` plus noise, and the RBF feature map."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_grid: np.ndarray
    centers: np.ndarray
    width: float

    def features(self, x: np.ndarray) -> jax.Array:
        """The feature matrix ``Phi[i, j] = exp(-(x_i - c_j)^2 / (2 width^2))``."""
        return rbf_features(x, self.centers, self.width)


def make_problem(
    seed: int = 0, *, n_train: int = 30, n_test: int = 200, n_features: int = 30, noise: float = 0.25
) -> RegressionProblem:
    """A seeded problem on [0, 1]: as many RBF centres as training points, so it can over-fit."""
    rng = np.random.default_rng(seed)
    x_train = np.sort(rng.uniform(0.0, 1.0, n_train))
    x_test = rng.uniform(0.0, 1.0, n_test)
    y_train = true_signal(x_train) + noise * rng.standard_normal(n_train)
    y_test = true_signal(x_test) + noise * rng.standard_normal(n_test)
    centers = np.linspace(0.0, 1.0, n_features)
    return RegressionProblem(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        x_grid=np.linspace(0.0, 1.0, 200), centers=centers, width=1.5 / (n_features - 1),
    )


def rbf_features(x: np.ndarray, centers: np.ndarray, width: float) -> jax.Array:
    """Gaussian radial basis functions of ``x`` (rows) centred at ``centers`` (columns)."""
    x, centers = jnp.asarray(x), jnp.asarray(centers)
    return jnp.exp(-0.5 * ((x[:, None] - centers[None, :]) / width) ** 2)


@partial(jax.jit, static_argnames=("tol",))
def fit_weights(features: jax.Array, targets: jax.Array, damp: jax.Array, tol: float = 1e-10) -> jax.Array:
    """The damped least-squares weights, differentiable in all three arguments."""
    options = SolverOptions(atol=tol, btol=tol, maxiter=20 * features.shape[1])
    weights, _ = lstsq(features, targets, damp=damp, options=options)
    return weights


def rmse(weights: jax.Array, features: jax.Array, targets: jax.Array) -> jax.Array:
    """Root-mean-square error of the prediction ``features @ weights``."""
    return jnp.sqrt(jnp.mean((features @ weights - targets) ** 2))


class DampedFit(NamedTuple):
    """One fit: the weights, the fitted curve on ``x_grid``, ``||w||`` and the held-out RMSE."""

    weights: np.ndarray
    curve: np.ndarray
    weight_norm: float
    held_out_error: float


def fit_damped(problem: RegressionProblem, damp: float) -> DampedFit:
    """Fit ``problem`` with damping ``damp`` and evaluate the result."""
    features = problem.features(problem.x_train)
    weights = fit_weights(features, jnp.asarray(problem.y_train), jnp.asarray(float(damp)))
    return DampedFit(
        weights=np.asarray(weights),
        curve=np.asarray(problem.features(problem.x_grid) @ weights),
        weight_norm=float(jnp.linalg.norm(weights)),
        held_out_error=float(rmse(weights, problem.features(problem.x_test), jnp.asarray(problem.y_test))),
    )
