"""The noise-conditional score model on 2-D points and its training objective, denoising score matching.

s(x, sigma) ~ grad_x log p_sigma(x), p_sigma = p * N(0, sigma^2 I), sigma in [SIGMA_MIN, SIGMA_MAX] (the
VE-SDE range). The network outputs sigma s(x, sigma) (the "scaled score", O(1) at every noise level),
either directly (a vector field) or as -grad_x of a scalar energy (a gradient field by construction);
its kind is read off the width of its last layer (1: energy, 2: vector field).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lsqlab.applications import mlp

SIGMA_MIN, SIGMA_MAX = 0.1, 3.0
DIM = 2

Params = mlp.Params
ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x (k, 2), sigma (k,)) -> s (k, 2)


def init_model(key: jax.Array, *, energy: bool, width: int = 64, depth: int = 3, dtype=jnp.float64) -> Params:
    """An MLP [x, log sigma] (3 inputs) -> ``depth`` tanh layers of ``width`` -> 1 (``energy``) or 2 outputs."""
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got {width} and {depth}")
    outputs = 1 if energy else DIM
    return mlp.init(key, [DIM + 1, *[width] * depth, outputs], dtype)


def is_energy(params: Params) -> bool:
    """Whether the model is an energy (one output) rather than a vector field (two outputs)."""
    return params[-1]["w"].shape[-1] == 1


def scaled_score(params: Params, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """sigma s(x, sigma) for points x (k, 2) and noise levels sigma (k,) or scalar.

    Vector model: net([x, log sigma]). Energy model: -grad_x e([x, log sigma]), i.e. the energy is
    E(x, sigma) = e / sigma and s = -grad_x E. Each output row depends on its own input row only.
    """
    log_sigma = jnp.broadcast_to(jnp.log(sigma), x.shape[:-1])[..., None]

    def network(points: jax.Array) -> jax.Array:
        return mlp.apply(params, jnp.concatenate([points, log_sigma.astype(points.dtype)], axis=-1))

    if is_energy(params):
        return -jax.grad(lambda points: jnp.sum(network(points)))(x)
    return network(x)


def score(params: Params, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """s(x, sigma) = scaled_score / sigma, shape (k, 2)."""
    return scaled_score(params, x, sigma) / jnp.broadcast_to(sigma, x.shape[:-1])[..., None]


def score_jacobians(params: Params, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """J_k = d s(x_k, sigma_k) / dx at each point, shape (k, 2, 2) (forward mode, exact)."""
    sigma = jnp.broadcast_to(sigma, x.shape[:-1])

    def one(point: jax.Array, level: jax.Array) -> jax.Array:
        return jax.jacfwd(lambda y: score(params, y[None], level[None])[0])(point)

    return jax.vmap(one)(x, sigma)



def noise_levels(key: jax.Array, k: int, dtype=jnp.float64) -> jax.Array:
    """k noise levels, log-uniform on [SIGMA_MIN, SIGMA_MAX]."""
    u = jax.random.uniform(key, (k,), dtype)
    return SIGMA_MIN * (SIGMA_MAX / SIGMA_MIN) ** u


class NoisedBatch(NamedTuple):
    """x~ = x + sigma eps for a batch of data x: points x~ (k, 2), levels sigma (k,), noise eps (k, 2)."""

    points: jax.Array
    sigmas: jax.Array
    noise: jax.Array


def noise_batch(key: jax.Array, data: jax.Array) -> NoisedBatch:
    """Perturb each data point with its own sigma (log-uniform) and Gaussian eps."""
    key_sigma, key_noise = jax.random.split(key)
    sigmas = noise_levels(key_sigma, data.shape[0], data.dtype)
    noise = jax.random.normal(key_noise, data.shape, data.dtype)
    return NoisedBatch(data + sigmas[:, None] * noise, sigmas, noise)


def dsm_loss(params: Params, batch: NoisedBatch) -> jax.Array:
    """sigma^2-weighted DSM: mean_k sigma_k^2 ||s(x~_k, sigma_k) + eps_k / sigma_k||^2 = mean ||sigma s + eps||^2.

    Its minimiser over all functions is the score of the noised data distribution at each sigma.
    """
    return jnp.mean(jnp.sum((scaled_score(params, batch.points, batch.sigmas) + batch.noise) ** 2, axis=-1))


_score = jax.jit(score)


def model_score(params: Params) -> ScoreFn:
    """(x, sigma) -> s(x, sigma) of a trained model, compiled once per model shape."""
    return partial(_score, params)
