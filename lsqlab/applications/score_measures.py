"""Measures of a score model on 2-D data: the exact score of the noised empirical distribution, the
asymmetry NAsym of ds/dx, the relative score error, and the energy distance and k-NN precision/recall of
samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lsqlab.applications.score_model import DIM, NoisedBatch, Params, ScoreFn, score_jacobians


def exact_score(x: jax.Array, sigma: jax.Array, data: jax.Array) -> jax.Array:
    """grad_x log p_sigma(x) for p_sigma = (1/n) sum_i N(x_i, sigma^2 I) (the noised empirical distribution).

    = sum_i w_i(x) (x_i - x) / sigma^2 with w = softmax_i(-||x - x_i||^2 / (2 sigma^2)): stable for any sigma.
    x (k, 2), sigma (k,) or scalar, data (n, 2).
    """
    _check_points(x, data)
    sigma = jnp.broadcast_to(sigma, x.shape[:-1])[:, None]
    logits = -jnp.sum((x[:, None, :] - data[None]) ** 2, axis=-1) / (2 * sigma**2)
    weights = jax.nn.softmax(logits, axis=1)
    return (weights @ data - x) / sigma**2


def exact_log_density(x: jax.Array, sigma: jax.Array, data: jax.Array) -> jax.Array:
    """log p_sigma(x) = logsumexp_i(-||x - x_i||^2 / (2 sigma^2)) - log n - (d/2) log(2 pi sigma^2)."""
    _check_points(x, data)
    sigma = jnp.broadcast_to(sigma, x.shape[:-1])
    logits = -jnp.sum((x[:, None, :] - data[None]) ** 2, axis=-1) / (2 * sigma[:, None] ** 2)
    n, d = data.shape
    return jax.scipy.special.logsumexp(logits, axis=1) - jnp.log(n) - 0.5 * d * jnp.log(2 * jnp.pi * sigma**2)


_exact_score = jax.jit(exact_score)
_jacobians = jax.jit(score_jacobians)


def nasym(jacobians: jax.Array) -> jax.Array:
    """NAsym(J) = ||(J - J^T)/2||_F^2 / ||J||_F^2 for each Jacobian in a stack (k, d, d)."""
    antisymmetric = 0.5 * (jacobians - jnp.swapaxes(jacobians, -1, -2))
    return jnp.sum(antisymmetric**2, axis=(-1, -2)) / jnp.sum(jacobians**2, axis=(-1, -2))


def mean_nasym(params: Params, points: jax.Array, sigmas: jax.Array) -> float:
    """NAsym of ds/dx averaged over evaluation pairs (x_k, sigma_k)."""
    return float(jnp.mean(nasym(_jacobians(params, points, sigmas))))


def evaluation_pairs(key: jax.Array, data: jax.Array, sigma_grid: jax.Array) -> NoisedBatch:
    """Every data point noised once at every sigma of the grid: (len(grid) * n) pairs, grid-major."""
    sigmas = jnp.repeat(jnp.asarray(sigma_grid, data.dtype), data.shape[0])
    tiled = jnp.tile(data, (len(sigma_grid), 1))
    noise = jax.random.normal(key, tiled.shape, data.dtype)
    return NoisedBatch(tiled + sigmas[:, None] * noise, sigmas, noise)


def relative_score_error(score_fn: ScoreFn, pairs: NoisedBatch, train: jax.Array, num_levels: int) -> float:
    """mean over the sigma grid of sqrt(sum_k ||s(x_k) - s*(x_k)||^2 / sum_k ||s*(x_k)||^2), s* = :func:`exact_score`.

    ``pairs`` from :func:`evaluation_pairs` (grid-major, ``num_levels`` blocks of equal size).
    """
    errors = []
    for points, sigmas in zip(jnp.split(pairs.points, num_levels), jnp.split(pairs.sigmas, num_levels)):
        reference = _exact_score(points, sigmas, train)
        errors.append(jnp.sqrt(jnp.sum((score_fn(points, sigmas) - reference) ** 2) / jnp.sum(reference**2)))
    return float(jnp.mean(jnp.stack(errors)))


def energy_distance(a: jax.Array, b: jax.Array) -> float:
    """D^2 = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'|| between the empirical distributions of a and b.

    Means over all pairs (V-statistics), so D^2 >= 0, with equality iff the two samples are equal as sets
    with multiplicities; in 1-D it is the square of ``scipy.stats.energy_distance``.
    """

    def mean_distance(u: jax.Array, v: jax.Array) -> jax.Array:
        squared = jnp.sum((u[:, None] - v[None]) ** 2, axis=-1)
        return jnp.mean(jnp.sqrt(jnp.maximum(squared, 0.0)))

    return float(2 * mean_distance(a, b) - mean_distance(a, a) - mean_distance(b, b))


def precision_recall(real: jax.Array, generated: jax.Array, k: int = 5) -> tuple[float, float]:
    """k-NN precision and recall (Kynkaanniemi et al. 2019).

    Precision: fraction of generated points inside the k-NN ball of some real point (real manifold);
    recall: fraction of real points inside the k-NN ball of some generated point.
    """
    if k < 1 or k >= min(real.shape[0], generated.shape[0]):
        raise ValueError(f"k must be in [1, min(n_real, n_generated) - 1], got {k}")

    def covered(support: jax.Array, queries: jax.Array) -> float:
        within = jnp.sum((support[:, None] - support[None]) ** 2, axis=-1)
        radii = jnp.sort(within, axis=1)[:, k]  # column 0 is the point itself
        to_queries = jnp.sum((queries[:, None] - support[None]) ** 2, axis=-1)
        return float(jnp.mean(jnp.any(to_queries <= radii[None], axis=1)))

    return covered(real, generated), covered(generated, real)


def _check_points(x: jax.Array, data: jax.Array) -> None:
    if x.ndim != 2 or data.ndim != 2 or x.shape[1] != DIM or data.shape[1] != DIM:
        raise ValueError(f"points and data must have shape (k, {DIM}) and (n, {DIM}), got {x.shape} and {data.shape}")
