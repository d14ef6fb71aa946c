"""Conservative score models on 2-D data: four ways to make a learned score a gradient field.

A noise-conditional score model s(x, sigma) ~ grad_x log p_sigma(x), p_sigma = p * N(0, sigma^2 I), is
trained by denoising score matching (DSM) over sigma in [0.1, 3] (the VE-SDE range). The true score is a
gradient, so its Jacobian ds/dx (a Hessian) is symmetric; a free network's is not. The four methods:

- ``unconstrained``: an MLP [x, log sigma] -> R^2;
- ``energy``: a scalar MLP e and s = -grad_x e / sigma (symmetric Jacobian by construction);
- ``penalty``: the unconstrained MLP plus mu * mean ||(J - J^T)/2||_F^2 on the training batch
  (QCSBM, Chao et al. 2023; exact in 2-D, where the antisymmetric part has one entry);
- ``nullspace``: the unconstrained MLP trained with :func:`lsqlab.nullspace.transform` under
  c = antisymmetric part of ds/dx at collocation pairs (x_k, sigma_k) (:func:`lsqlab.constraints.conservativeness`).

Both networks output sigma s(x, sigma) (the "scaled score", O(1) at every noise level); the model's
kind is read off the width of its last layer (1: energy, 2: vector field). Measures: the normalised
asymmetry NAsym = ||(J - J^T)/2||_F^2 / ||J||_F^2, the error against the exact score of the noised
empirical distribution, and the energy distance and k-NN precision/recall of annealed-Langevin samples.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import baselines, constraints, multipliers, nullspace
from lsqlab.applications import mlp
from lsqlab.data import toy_2d

SIGMA_MIN, SIGMA_MAX = 0.1, 3.0
METHODS = ("unconstrained", "energy", "penalty", "nullspace")
DIM = 2

Params = mlp.Params
ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x (k, 2), sigma (k,)) -> s (k, 2)


# ----------------------------------------------------------------------------------------------- models


def init_model(key: jax.Array, method: str, *, width: int = 64, depth: int = 3, dtype=jnp.float64) -> Params:
    """An MLP [x, log sigma] (3 inputs) -> ``depth`` tanh layers of ``width`` -> 1 (energy) or 2 outputs."""
    _check_method(method)
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got {width} and {depth}")
    outputs = 1 if method == "energy" else DIM
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


_jacobians = jax.jit(score_jacobians)


# ------------------------------------------------------------------------------ denoising score matching


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


# ---------------------------------------------------------------------------------------- exact score


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
_score = jax.jit(score)


def model_score(params: Params) -> ScoreFn:
    """(x, sigma) -> s(x, sigma) of a trained model, compiled once per model shape."""
    return functools.partial(_score, params)


# ------------------------------------------------------------------------------------------- measures


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


# ------------------------------------------------------------------------------------------- sampling


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


@functools.partial(jax.jit, static_argnames=("num_samples", "num_levels", "steps_per_level", "step_size"))
def sample_with_model(params: Params, data: jax.Array, key: jax.Array, num_samples: int, *, num_levels: int = 20,
                      steps_per_level: int = 20, step_size: float = 0.1) -> jax.Array:
    """:func:`annealed_langevin` with the model's score, started from the moments of ``data`` (the training set)."""
    return annealed_langevin(lambda x, sigma: score(params, x, sigma), key, num_samples, start_mean=data.mean(0),
                             start_cov=jnp.cov(data.T), num_levels=num_levels, steps_per_level=steps_per_level,
                             step_size=step_size)


@functools.partial(jax.jit, static_argnames=("num_samples", "num_levels", "steps_per_level", "step_size"))
def sample_with_exact_score(data: jax.Array, key: jax.Array, num_samples: int, *, num_levels: int = 20,
                            steps_per_level: int = 20, step_size: float = 0.1) -> jax.Array:
    """:func:`annealed_langevin` with :func:`exact_score` of the noised ``data`` (the reference sampler)."""
    return annealed_langevin(lambda x, sigma: exact_score(x, sigma, data), key, num_samples, start_mean=data.mean(0),
                             start_cov=jnp.cov(data.T), num_levels=num_levels, steps_per_level=steps_per_level,
                             step_size=step_size)


# ------------------------------------------------------------------------------------------- training


def _asymmetry_at(params: Params, *, points: jax.Array, sigmas: jax.Array) -> jax.Array:
    """The block of one pair (x_k, sigma_k) = (points, sigmas): c_k = ((J_k - J_k^T)/2)_{12}."""
    field = lambda p, y: scaled_score(p, y[None], sigmas)[0]  # noqa: E731
    return constraints.conservativeness(field).single(params, points=points)


asymmetry_constraint = constraints.Pointwise(_asymmetry_at)
"""c_k = ((J_k - J_k^T)/2)_{12}, J_k = d[sigma_k s(x, sigma_k)]/dx at x_k: one entry per pair in 2-D.

:func:`lsqlab.constraints.conservativeness` of the field x -> sigma_k s(x, sigma_k), one collocation
pair (x_k, sigma_k) at a time: ``asymmetry_constraint(params, points=(k, 2), sigmas=(k,))``, a
:class:`lsqlab.constraints.Pointwise` constraint (its Jacobian is formed point by point). The factor
sigma_k (constant in x) leaves the zero set unchanged and gives every noise level rows of similar size,
as the sigma^2 weighting of the DSM loss does. ||(J_k - J_k^T)/2||_F^2 = 2 c_k^2.
"""


def collocation_pairs(key: jax.Array, data: jax.Array, num: int) -> NoisedBatch:
    """``num`` collocation pairs (x_k, sigma_k): training points drawn with replacement, noised at log-uniform sigma."""
    key_pick, key_noise = jax.random.split(key)
    return noise_batch(key_noise, data[jax.random.randint(key_pick, (num,), 0, data.shape[0])])


class TrainingRun(NamedTuple):
    """A trained model: parameters, DSM loss per step, seconds per step (compiled, after the first),
    the fixed collocation pairs (null-space method with fixed points, else None), and the last
    null-space step's :class:`lsqlab.nullspace.ProjectionInfo` (else None)."""

    params: Params
    losses: np.ndarray
    seconds_per_step: float
    collocation: NoisedBatch | None
    info: Any


class TrainingConfig(NamedTuple):
    """Settings of :func:`train` that fix the compiled step (hashable: one compilation per config)."""

    method: str
    steps: int
    batch_size: int = 256
    learning_rate: float = 2e-3
    mu: float = 100.0
    gamma: float = 0.5
    num_collocation: int = 32
    resample: bool = True
    solver_tol: float = 1e-4
    gram: Any = multipliers.GramDense()


def train(
    method: str,
    data: jax.Array,
    *,
    key: jax.Array,
    steps: int,
    width: int = 64,
    depth: int = 3,
    **options: Any,
) -> TrainingRun:
    """Train a score model by DSM with Adam (cosine-decayed learning rate), one of :data:`METHODS`.

    ``options`` (see :class:`TrainingConfig` for defaults): ``batch_size``, ``learning_rate``;
    ``mu``, the weight of the asymmetry penalty mu * mean_k ||(J_k - J_k^T)/2||_F^2 over the batch
    (``penalty``); ``gamma``, ``num_collocation``, ``resample``, ``solver_tol``: the null-space
    method's landing rate, number m of collocation pairs (m < #parameters), whether the pairs are
    redrawn at every step (else drawn once and kept), and the LSMR tolerance of its solves on J
    (used with ``gram=None``); ``gram``: the solves on J, by default the dense Gram form
    (:class:`lsqlab.multipliers.GramDense`: J formed pair by pair, m = 32 by default, and (J J^T)^+
    shared by both solves of a step), about 8x cheaper than LSMR here for the same steps.
    """
    config = TrainingConfig(method, steps, **options)
    _check_config(config)
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[1] != DIM:
        raise ValueError(f"data must have shape (n, {DIM}), got {data.shape}")
    key_init, key_colloc, key_steps = jax.random.split(key, 3)
    params = init_model(key_init, method, width=width, depth=depth, dtype=data.dtype)
    fixed = None
    if method == "nullspace" and not config.resample:
        fixed = collocation_pairs(key_colloc, data, config.num_collocation)
    state = _optimizer(config).init(params)
    losses = np.empty(steps)
    keys = jax.random.split(key_steps, steps)
    params, state, loss = _train_step(params, state, keys[0], data, fixed, config)  # compiles
    losses[0] = float(loss)
    start = time.perf_counter()
    for i in range(1, steps):
        params, state, loss = _train_step(params, state, keys[i], data, fixed, config)
        losses[i] = loss
    jax.block_until_ready(params)
    seconds = (time.perf_counter() - start) / (steps - 1)
    return TrainingRun(params, losses, seconds, fixed, state.info if method == "nullspace" else None)


def _optimizer(config: TrainingConfig) -> Any:
    """Adam with a cosine-decayed learning rate; for ``nullspace`` wrapped by the null-space transform."""
    base = optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=0.05))
    if config.method != "nullspace":
        return base
    return nullspace.transform(base, asymmetry_constraint, gamma=config.gamma, order="both",
                               atol=config.solver_tol, btol=config.solver_tol, gram=config.gram)


def _objective(config: TrainingConfig) -> Callable[..., jax.Array]:
    """DSM loss; for ``penalty`` plus mu * mean_k ||(J_k - J_k^T)/2||_F^2 over the batch points."""
    if config.method != "penalty":
        return lambda params, batch, constraint_args=None: dsm_loss(params, batch)
    # quadratic_penalty adds (rho/2) sum_k c_k^2; rho = 4 mu / k makes it mu * mean_k 2 c_k^2
    return baselines.quadratic_penalty(dsm_loss, asymmetry_constraint, 4.0 * config.mu / config.batch_size)


@functools.partial(jax.jit, static_argnames="config")
def _train_step(params: Params, state: Any, key: jax.Array, data: jax.Array, fixed: NoisedBatch | None,
                config: TrainingConfig) -> tuple[Params, Any, jax.Array]:
    """One step: a fresh noised batch, the (penalised) DSM gradient, the optimiser's (projected) update."""
    key_pick, key_noise, key_colloc = jax.random.split(key, 3)
    batch = noise_batch(key_noise, data[jax.random.randint(key_pick, (config.batch_size,), 0, data.shape[0])])
    grads = jax.grad(_objective(config))(params, batch, constraint_args=dict(points=batch.points, sigmas=batch.sigmas))
    optimizer = _optimizer(config)
    if config.method == "nullspace":
        pairs = fixed if fixed is not None else collocation_pairs(key_colloc, data, config.num_collocation)
        updates, state = optimizer.update(grads, state, params, points=pairs.points, sigmas=pairs.sigmas)
    else:
        updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, dsm_loss(params, batch)


def _check_config(config: TrainingConfig) -> None:
    _check_method(config.method)
    if config.steps < 2 or config.batch_size < 1 or config.num_collocation < 1:
        raise ValueError(f"need steps >= 2, batch_size >= 1 and num_collocation >= 1; got {config.steps}, "
                         f"{config.batch_size}, {config.num_collocation}")
    if not 0 < config.gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {config.gamma}")
    if not config.mu > 0:
        raise ValueError(f"mu must be > 0, got {config.mu}")


def _check_points(x: jax.Array, data: jax.Array) -> None:
    if x.ndim != 2 or data.ndim != 2 or x.shape[1] != DIM or data.shape[1] != DIM:
        raise ValueError(f"points and data must have shape (k, {DIM}) and (n, {DIM}), got {x.shape} and {data.shape}")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


# ----------------------------------------------------------------------------------------- experiments

SIGMA_GRID = np.geomspace(SIGMA_MIN, SIGMA_MAX, 6)  # where score error and held-out NAsym are measured


class Budget(NamedTuple):
    """Sizes of one experiment: training steps, training / held-out points, held-out points noised at
    each sigma of :data:`SIGMA_GRID` for the measures, samples, and the Langevin schedule."""

    steps: int
    num_train: int = 2000
    num_test: int = 2000
    num_eval: int = 400
    num_samples: int = 2000
    num_levels: int = 20
    steps_per_level: int = 20


class Experiment(NamedTuple):
    """One table row (settings and measures), the training run (None for the exact score) and the samples."""

    row: dict
    run: TrainingRun | None
    samples: np.ndarray


def experiment(data_name: str, method: str, seed: int, budget: Budget, **options: Any) -> Experiment:
    """Train ``method`` (or use the exact score: ``method="exact"``) on ``toy_2d(data_name)`` and measure it.

    Row: NAsym on held-out pairs (x_k + sigma eps, sigma) over :data:`SIGMA_GRID`, the relative score error
    there, energy distance and k-NN precision/recall (k = 5) between Langevin samples and held-out data,
    milliseconds per training step, and the final training DSM loss (mean of the last 10% of steps).
    """
    if method not in (*METHODS, "exact"):
        raise ValueError(f"unknown method {method!r}; choose one of {(*METHODS, 'exact')}")
    train_data = jnp.asarray(toy_2d(data_name, budget.num_train, seed=seed))
    test_data = jnp.asarray(toy_2d(data_name, budget.num_test, seed=10_000 + seed))
    key_train, key_eval, key_sample = jax.random.split(jax.random.key(seed), 3)
    pairs = evaluation_pairs(key_eval, test_data[: budget.num_eval], SIGMA_GRID)
    langevin = dict(num_levels=budget.num_levels, steps_per_level=budget.steps_per_level)
    if method == "exact":
        run = None
        samples = sample_with_exact_score(train_data, key_sample, budget.num_samples, **langevin)
        measures = dict(nasym=0.0, score_error=0.0, ms_per_step=float("nan"), final_loss=float("nan"))
    else:
        run = train(method, train_data, key=key_train, steps=budget.steps, **options)
        samples = sample_with_model(run.params, train_data, key_sample, budget.num_samples, **langevin)
        measures = dict(
            nasym=mean_nasym(run.params, pairs.points, pairs.sigmas),
            score_error=relative_score_error(model_score(run.params), pairs, train_data, len(SIGMA_GRID)),
            ms_per_step=1e3 * run.seconds_per_step,
            final_loss=float(np.mean(run.losses[-max(1, budget.steps // 10):])),
        )
    precision, recall = precision_recall(test_data, samples)
    row = dict(data=data_name, method=method, seed=seed, **measures,
               energy_distance=energy_distance(samples, test_data), precision=precision, recall=recall)
    return Experiment(row, run, np.asarray(samples))
