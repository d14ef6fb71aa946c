"""The random-feature GP's predictive distribution: a damped least-squares solve and a dense variance.

Bayesian linear regression on random features (a GP whose kernel is k(x, x') ~ phi(x)^T phi(x'),
:mod:`.random_features`):

    y = Phi(theta) w + eps,   w ~ N(0, I),   eps ~ N(0, sigma^2 I)
    w_mean = LstSq(Phi, y, damp = sigma) = (Phi^T Phi + sigma^2 I)^{-1} Phi^T y        (lsqlab.lstsq)
    mean(x*) = phi*^T w_mean,   var(x*) = sigma^2 (1 + phi*^T (Phi^T Phi + sigma^2 I)^{-1} phi*)

The kernel's amplitudes live inside the features, so the damping is the noise standard deviation sigma
(in general lambda^2 = noise variance / prior variance); ``hyper["noise"]`` is log sigma. The mean's
gradient reaches theta and sigma through the adjoint rules of ``lsqlab.lstsq``; the variance through a
dense Cholesky factorisation.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import lsqlab
from lsqlab.applications.random_features import Hyper, features
from lsqlab.operators import is_concrete
from lsqlab.solver import LstSqInfo, SolverOptions

# The mean-weight solves (forward, and backward in the derivative rules). conlim 1e12: the damped system's
# condition number is at most sqrt(||Phi||^2 + sigma^2) / sigma, far below 1e12 here, so atol/btol stop the
# solve. maxiter: above 10 min(n, F) for every problem of the application's experiments (LSMR needs
# min(n, F) steps in exact arithmetic, more in rounding); a solve that reaches it reports istop 7 and
# :func:`predict` refuses its answer.
SOLVE = SolverOptions(atol=1e-10, btol=1e-10, conlim=1e12, maxiter=4000)


def posterior_weights(phi: jax.Array, y: jax.Array, noise: jax.Array | float,
                      options: SolverOptions = SOLVE) -> tuple[jax.Array, LstSqInfo]:
    """w = LstSq(Phi, y, damp = sigma) = (Phi^T Phi + sigma^2 I)^{-1} Phi^T y, by lsqlab.lstsq (differentiable)."""
    check_shapes(phi, y)
    if is_concrete(noise) and not float(noise) > 0:
        raise ValueError(f"the noise standard deviation (the damping) must be > 0, got {float(noise)}")
    return lsqlab.lstsq(phi, y, damp=noise, options=options)




def posterior_quadratic(phi: jax.Array, phi_star: jax.Array, noise: jax.Array) -> jax.Array:
    """phi*^T (Phi^T Phi + sigma^2 I)^{-1} phi* per row of phi*, by a dense Cholesky factorisation.

    Primal (F x F) when F <= n; otherwise the dual by Woodbury,
    (||phi*||^2 - phi*^T Phi^T (Phi Phi^T + sigma^2 I)^{-1} Phi phi*) / sigma^2 (n x n).
    """
    n, count = phi.shape
    if count <= n:
        chol = jnp.linalg.cholesky(phi.T @ phi + noise**2 * jnp.eye(count))
        half = jax.scipy.linalg.solve_triangular(chol, phi_star.T, lower=True)
        return jnp.sum(half**2, axis=0)
    chol = jnp.linalg.cholesky(phi @ phi.T + noise**2 * jnp.eye(n))
    half = jax.scipy.linalg.solve_triangular(chol, phi @ phi_star.T, lower=True)
    return (jnp.sum(phi_star**2, axis=1) - jnp.sum(half**2, axis=0)) / noise**2


def masked_quadratic(gram: jax.Array, train: jax.Array, noise: jax.Array) -> jax.Array:
    """phi_i^T (Phi_T^T Phi_T + sigma^2 I)^{-1} phi_i at every point i, Phi_T the rows with train = 1.

    From the Gram matrix K = Phi Phi^T of all points, shared by the folds (dual form, Woodbury):
    (K_ii - K_iT (K_TT + sigma^2 I)^{-1} K_Ti) / sigma^2; masked-out rows enter as sigma^2 I and drop out.
    """
    cross = gram * train[:, None]
    chol = jnp.linalg.cholesky(cross * train[None, :] + noise**2 * jnp.eye(len(train)))
    half = jax.scipy.linalg.solve_triangular(chol, cross, lower=True)
    return (jnp.diag(gram) - jnp.sum(half**2, axis=0)) / noise**2


def predictive(phi: jax.Array, y: jax.Array, phi_star: jax.Array, noise: jax.Array,
               options: SolverOptions = SOLVE) -> tuple[jax.Array, jax.Array, LstSqInfo]:
    """Predictive mean phi*^T w, variance sigma^2 (1 + phi*^T (Phi^T Phi + sigma^2 I)^{-1} phi*), solve info."""
    weights, info = posterior_weights(phi, y, noise, options)
    return phi_star @ weights, noise**2 * (1.0 + posterior_quadratic(phi, phi_star, noise)), info


def negative_log_density(y: jax.Array, mean: jax.Array, variance: jax.Array) -> jax.Array:
    """-log N(y; m, v) = log(2 pi v) / 2 + (y - m)^2 / (2 v), pointwise."""
    return 0.5 * jnp.log(2 * jnp.pi * variance) + 0.5 * (y - mean) ** 2 / variance


def nlpd(y: jax.Array, mean: jax.Array, variance: jax.Array) -> jax.Array:
    """Mean negative log predictive density of Gaussians."""
    return jnp.mean(negative_log_density(y, mean, variance))


def rmse(y: jax.Array, mean: jax.Array) -> jax.Array:
    """Root mean squared error."""
    return jnp.sqrt(jnp.mean((y - mean) ** 2))


def predict(kind: str, hyper: Hyper, draws: dict[str, jax.Array], x_train: np.ndarray, y_train: np.ndarray,
            x_test: np.ndarray, options: SolverOptions = SOLVE) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and variance at x_test of the model fitted on all of (x_train, y_train)."""
    x_train, x_test, y_train = as_inputs(x_train), as_inputs(x_test), jnp.asarray(y_train, jnp.float64)
    check_shapes(x_train, y_train)
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"x_test has {x_test.shape[1]} input dimensions, x_train {x_train.shape[1]}")
    mean, variance, info = _predict(hyper, draws, x_train, y_train, x_test, kind=kind, options=options)
    if not bool(info.converged):
        raise RuntimeError(f"the mean-weight solve did not converge: {info.reason}")
    return np.asarray(mean), np.asarray(variance)


@partial(jax.jit, static_argnames=("kind", "options"))
def _predict(hyper, draws, x_train, y_train, x_test, *, kind, options):
    phi, phi_star = features(kind, hyper, draws, x_train), features(kind, hyper, draws, x_test)
    return predictive(phi, y_train, phi_star, jnp.exp(hyper["noise"]), options)


def as_inputs(x: np.ndarray) -> jax.Array:
    """Inputs as a float64 matrix (n, d); a vector becomes one column."""
    x = jnp.asarray(x, jnp.float64)
    return x[:, None] if x.ndim == 1 else x


def check_shapes(a: jax.Array, y: jax.Array) -> None:
    """Raise ValueError unless ``a`` is a matrix with one row per entry of the vector ``y``."""
    if jnp.ndim(y) != 1 or jnp.ndim(a) != 2 or jnp.shape(a)[0] != jnp.shape(y)[0]:
        raise ValueError(f"need a matrix with one row per target; got shapes {jnp.shape(a)} and {jnp.shape(y)}")
