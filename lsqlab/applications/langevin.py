"""Sampling with a score: annealed Langevin dynamics, with a trained model or with the exact score."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab.applications.score_measures import exact_score
from lsqlab.applications.score_model import DIM, SIGMA_MAX, SIGMA_MIN, Params, ScoreFn, score


def langevin_levels(num_levels: int) -> np.ndarray:
    """Geometric noise levels from SIGMA_MAX down to SIGMA_MIN."""
    if num_levels < 2:
        raise ValueError(f"need at least 2 noise levels, got {num_levels}")
    return np.geomspace(SIGMA_MAX, SIGMA_MIN, num_levels)


def annealed_langevin(
    score_fn: ScoreFn,
    key: jax.Array,
    num_samples: int,
    *,
    start_mean: jax.Array,
    start_cov: jax.Array,
    num_levels: int = 20,
    steps_per_level: int = 20,
    step_size: float = 0.1,
) -> jax.Array:
    """Annealed Langevin dynamics (Song & Ermon 2019) with a final denoising step.

    Start: x ~ N(start_mean, start_cov + SIGMA_MAX^2 I) (the data's first two moments, noised to the
    largest level). At each level sigma_i (geometric, SIGMA_MAX -> SIGMA_MIN), ``steps_per_level``
    steps x <- x + a_i s(x, sigma_i) + sqrt(2 a_i) z, z ~ N(0, I), with a_i = step_size * sigma_i^2;
    then the Tweedie denoiser x <- x + SIGMA_MIN^2 s(x, SIGMA_MIN). Seeded by ``key``.
    """
    if num_samples < 1 or steps_per_level < 1 or not step_size > 0:
        raise ValueError(f"need num_samples, steps_per_level >= 1 and step_size > 0; got "
                         f"{num_samples}, {steps_per_level}, {step_size}")
    dtype = jnp.asarray(start_mean).dtype
    levels = jnp.asarray(langevin_levels(num_levels), dtype)
    key_start, key_walk = jax.random.split(key)
    cov = jnp.asarray(start_cov, dtype) + SIGMA_MAX**2 * jnp.eye(DIM, dtype=dtype)
    x = start_mean + jax.random.normal(key_start, (num_samples, DIM), dtype) @ jnp.linalg.cholesky(cov).T

    def level_step(x: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        sigma, level_key = inputs
        a = step_size * sigma**2
        sigmas = jnp.full((num_samples,), sigma)

        def langevin_step(x: jax.Array, step_key: jax.Array) -> tuple[jax.Array, None]:
            z = jax.random.normal(step_key, x.shape, dtype)
            return x + a * score_fn(x, sigmas) + jnp.sqrt(2 * a) * z, None

        x, _ = jax.lax.scan(langevin_step, x, jax.random.split(level_key, steps_per_level))
        return x, None

    x, _ = jax.lax.scan(level_step, x, (levels, jax.random.split(key_walk, num_levels)))
    return x + SIGMA_MIN**2 * score_fn(x, jnp.full((num_samples,), SIGMA_MIN, dtype))


@partial(jax.jit, static_argnames=("num_samples", "num_levels", "steps_per_level", "step_size"))
def sample_with_model(params: Params, data: jax.Array, key: jax.Array, num_samples: int, *, num_levels: int = 20,
                      steps_per_level: int = 20, step_size: float = 0.1) -> jax.Array:
    """:func:`annealed_langevin` with the model's score, started from the moments of ``data`` (the training set)."""
    return annealed_langevin(lambda x, sigma: score(params, x, sigma), key, num_samples, start_mean=data.mean(0),
                             start_cov=jnp.cov(data.T), num_levels=num_levels, steps_per_level=steps_per_level,
                             step_size=step_size)


@partial(jax.jit, static_argnames=("num_samples", "num_levels", "steps_per_level", "step_size"))
def sample_with_exact_score(data: jax.Array, key: jax.Array, num_samples: int, *, num_levels: int = 20,
                            steps_per_level: int = 20, step_size: float = 0.1) -> jax.Array:
    """:func:`annealed_langevin` with :func:`exact_score` of the noised ``data`` (the reference sampler)."""
    return annealed_langevin(lambda x, sigma: exact_score(x, sigma, data), key, num_samples, start_mean=data.mean(0),
                             start_cov=jnp.cov(data.T), num_levels=num_levels, steps_per_level=steps_per_level,
                             step_size=step_size)
