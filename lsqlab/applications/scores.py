"""Conservative score models on 2-D data: four ways to make a learned score a gradient field.

A noise-conditional score model s(x, sigma) ~ grad_x log p_sigma(x), p_sigma = p * N(0, sigma^2 I), is
trained by denoising score matching (DSM) over sigma in [0.1, 3] (the VE-SDE range). The true score is a
gradient, so its Jacobian ds/dx (a Hessian) is symmetric; a free network's is not. The four methods:

- ``plain``: an MLP [x, log sigma] -> R^2, nothing imposed;
- ``energy``: a scalar MLP e and s = -grad_x e / sigma (symmetric Jacobian by construction);
- ``penalty``: the plain MLP plus mu * mean ||(J - J^T)/2||_F^2 on the training batch
  (QCSBM, Chao et al. 2023; exact in 2-D, where the antisymmetric part has one entry);
- ``nullspace``: the plain MLP trained with :func:`lsqlab.nullspace.transform` under
  c = antisymmetric part of ds/dx at collocation pairs (x_k, sigma_k) (:func:`lsqlab.constraints.conservativeness`).

Both networks output sigma s(x, sigma) (the "scaled score", O(1) at every noise level); the model's
kind is read off the width of its last layer (1: energy, 2: vector field). Measures: the normalised
asymmetry NAsym = ||(J - J^T)/2||_F^2 / ||J||_F^2, the error against the exact score of the noised
empirical distribution, and the energy distance and k-NN precision/recall of annealed-Langevin samples.
Training runs in the shared loop (:mod:`lsqlab.applications.training`); :data:`TABLES` holds the main
comparison (``scores``) and the fixed-against-redrawn collocation study (``scores_collocation``).
"""

from __future__ import annotations

from functools import lru_cache, partial
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import baselines, constraints, multipliers, nullspace
from lsqlab.applications import mlp, tables, training
from lsqlab.data import TOY_2D, toy_2d
from lsqlab.solver import SolverOptions

SIGMA_MIN, SIGMA_MAX = 0.1, 3.0
METHODS = ("plain", "energy", "penalty", "nullspace")
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
    return partial(_score, params)


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


LEARNING_RATE = 2e-3  # Adam's, cosine-decayed to 5 % over a run
MU = 100.0  # weight of the asymmetry penalty (``penalty``)
GAMMA = 0.5  # fraction of the constraint's violation removed per step (``nullspace``)
LSMR_OPTIONS = SolverOptions(atol=1e-4, btol=1e-4)  # the null-space solves on J when train(gram=None)


def collocation_pairs(key: jax.Array, data: jax.Array, num: int) -> NoisedBatch:
    """``num`` collocation pairs (x_k, sigma_k): training points drawn with replacement, noised at log-uniform sigma."""
    key_pick, key_noise = jax.random.split(key)
    return noise_batch(key_noise, data[jax.random.randint(key_pick, (num,), 0, data.shape[0])])


class Run(NamedTuple):
    """A trained score model: the shared loop's record (:class:`~lsqlab.applications.training.Trained`:
    parameters, loss per step, ms per step, the null-space steps' diagnostics) and the fixed collocation
    pairs (``nullspace`` with ``resample=False``; else None)."""

    trained: training.Trained
    collocation: NoisedBatch | None


def train(
    method: str,
    data: jax.Array,
    *,
    key: jax.Array,
    steps: int,
    chunk: int | None = None,
    width: int = 64,
    depth: int = 3,
    batch_size: int = 256,
    num_collocation: int = 32,
    resample: bool = True,
    gram: multipliers.GramDense | multipliers.GramCG | None = multipliers.GramDense(),
) -> Run:
    """Train a score model of one of :data:`METHODS` by DSM with Adam in :func:`training.train`.

    Adam's learning rate: :data:`LEARNING_RATE`, cosine-decayed to 5 % over the ``steps`` (``chunk`` steps
    per compiled chunk). ``key`` splits into (init, collocation, steps) keys and ``steps`` splits into one key
    per step, which splits into (pick, noise, collocation) keys: each step draws ``batch_size`` training
    points with replacement and noises them (:func:`noise_batch`). ``penalty`` adds
    mu * mean_k ||(J_k - J_k^T)/2||_F^2 over the batch (mu = :data:`MU`); ``nullspace`` projects every Adam
    step (:func:`lsqlab.nullspace.transform`, order "both", landing rate :data:`GAMMA`) so that
    :data:`asymmetry_constraint` vanishes at ``num_collocation`` pairs (m < #parameters), redrawn at every
    step (``resample``) or drawn once from the collocation key and kept. The solves on J use ``gram``: by
    default the dense Gram form (:class:`lsqlab.multipliers.GramDense`: J formed pair by pair, (J J^T)^+
    shared by both solves of a step); None: LSMR from zero with :data:`LSMR_OPTIONS`.
    ``Run.trained.losses``: the objective each step minimises (for ``penalty`` DSM plus the penalty).
    """
    _check_method(method)
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[1] != DIM:
        raise ValueError(f"data must have shape (n, {DIM}), got {data.shape}")
    if steps < 1 or batch_size < 1 or num_collocation < 1:
        raise ValueError(f"need steps, batch_size and num_collocation >= 1; got {steps}, {batch_size}, "
                         f"{num_collocation}")
    key_init, key_colloc, key_steps = jax.random.split(key, 3)
    params = init_model(key_init, method, width=width, depth=depth, dtype=data.dtype)
    constrained = method == "nullspace"
    fixed = collocation_pairs(key_colloc, data, num_collocation) if constrained and not resample else None
    batches = training.Batches(jax.random.split(key_steps, steps), _draw(constrained, batch_size, num_collocation),
                               (data, fixed))
    trained = training.train(_objective(method, batch_size), _optimizer(method, steps, gram), params, batches,
                             chunk=chunk)
    return Run(trained, fixed)


# The pieces of a run are built once per setting (lru_cache), so that every seed and data set of a
# table runs the same compiled chunk (see lsqlab.applications.training).


@lru_cache(maxsize=16)
def _draw(constrained: bool, batch_size: int, num_collocation: int) -> Callable[[jax.Array, tuple], tuple]:
    """A step's noised batch, and for the null-space method its collocation pairs (kept or redrawn)."""

    def draw(step_key: jax.Array, arrays: tuple) -> tuple[NoisedBatch, dict]:
        points, kept = arrays
        key_pick, key_noise, key_pairs = jax.random.split(step_key, 3)
        batch = noise_batch(key_noise, points[jax.random.randint(key_pick, (batch_size,), 0, points.shape[0])])
        if not constrained:
            return batch, {}
        pairs = kept if kept is not None else collocation_pairs(key_pairs, points, num_collocation)
        return batch, dict(points=pairs.points, sigmas=pairs.sigmas)

    return draw


@lru_cache(maxsize=16)
def _optimizer(method: str, steps: int, gram: multipliers.GramDense | multipliers.GramCG | None,
               ) -> optax.GradientTransformation:
    """Adam, cosine-decayed over ``steps``; for the null-space method through the transform."""
    adam = optax.adam(optax.cosine_decay_schedule(LEARNING_RATE, steps, alpha=0.05))
    if method != "nullspace":
        return adam
    return nullspace.transform(adam, asymmetry_constraint, gamma=GAMMA, order="both", gram=gram, options=LSMR_OPTIONS)


@lru_cache(maxsize=16)
def _objective(method: str, batch_size: int) -> Callable[[Params, NoisedBatch], jax.Array]:
    """DSM loss; for ``penalty`` plus mu * mean_k ||(J_k - J_k^T)/2||_F^2 over the batch's points."""
    if method != "penalty":
        return dsm_loss
    # quadratic_penalty adds (rho/2) sum_k c_k^2; rho = 4 mu / k makes it mu * mean_k 2 c_k^2
    penalised = baselines.quadratic_penalty(dsm_loss, asymmetry_constraint, 4.0 * MU / batch_size)
    return lambda params, batch: penalised(params, batch, constraint_args=dict(points=batch.points,
                                                                                sigmas=batch.sigmas))


def _check_points(x: jax.Array, data: jax.Array) -> None:
    if x.ndim != 2 or data.ndim != 2 or x.shape[1] != DIM or data.shape[1] != DIM:
        raise ValueError(f"points and data must have shape (k, {DIM}) and (n, {DIM}), got {x.shape} and {data.shape}")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


# ----------------------------------------------------------------------------------------- experiments

SIGMA_GRID = np.geomspace(SIGMA_MIN, SIGMA_MAX, 6)  # where score error and held-out NAsym are measured


@dataclass(frozen=True)
class Budget:
    """Sizes of the tables (defaults: the recorded, full budget; :data:`SMOKE`: the smoke budget).

    Seeds and data sets (:data:`lsqlab.data.TOY_2D`) of the main table; Adam steps per model, trained in
    ``chunks`` compiled chunks (it must divide both step counts); training / held-out points, of which
    ``num_eval`` are noised at each sigma of :data:`SIGMA_GRID` for the measures; Langevin samples and
    schedule. The collocation table (``scores_collocation``) trains
    the null-space method for ``collocation_steps`` on two spirals with m in ``collocation_sizes``.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    data_sets: tuple[str, ...] = TOY_2D
    steps: int = 1500
    chunks: int = 5
    num_train: int = 2000
    num_test: int = 2000
    num_eval: int = 400
    num_samples: int = 2000
    num_levels: int = 20
    steps_per_level: int = 20
    collocation_steps: int = 800
    collocation_sizes: tuple[int, ...] = (16, 32, 64)

    def __post_init__(self) -> None:
        if self.steps % self.chunks or self.collocation_steps % self.chunks:
            raise ValueError(f"chunks ({self.chunks}) must divide steps ({self.steps}) and collocation_steps "
                             f"({self.collocation_steps})")


SMOKE = Budget(seeds=(0,), data_sets=("two_spirals",), steps=20, num_train=200, num_test=200, num_eval=20,
               num_samples=100, num_levels=4, steps_per_level=4, collocation_steps=20, collocation_sizes=(16,))


class Experiment(NamedTuple):
    """One table row (settings and measures), the trained model (None for the exact score) and the samples."""

    row: dict
    trained: training.Trained | None
    samples: np.ndarray


class _Setting(NamedTuple):
    """One data set and seed: training and held-out points, the held-out evaluation pairs, and the keys
    of training and of the rest (sampling, fresh pairs)."""

    train: jax.Array
    test: jax.Array
    pairs: NoisedBatch
    key_train: jax.Array
    key_other: jax.Array


def _setting(data: str, seed: int, budget: Budget) -> _Setting:
    train_data = jnp.asarray(toy_2d(data, budget.num_train, seed=seed))
    test_data = jnp.asarray(toy_2d(data, budget.num_test, seed=10_000 + seed))
    key_train, key_eval, key_other = jax.random.split(jax.random.key(seed), 3)
    pairs = evaluation_pairs(key_eval, test_data[: budget.num_eval], SIGMA_GRID)
    return _Setting(train_data, test_data, pairs, key_train, key_other)


def experiment(method: str, seed: int, budget: Budget = Budget(), *, data: str) -> Experiment:
    """Train ``method`` (or use the exact score: ``method="exact"``) on ``toy_2d(data)`` and measure it.

    Row: NAsym on held-out pairs (x_k + sigma eps, sigma) over :data:`SIGMA_GRID`, the relative score error
    there, energy distance and k-NN precision/recall (k = 5) between Langevin samples and held-out data,
    ``ms_per_step`` (:attr:`training.Trained.ms_per_step`), and ``final_loss``: the training objective
    averaged over the last 10 % of steps (DSM, for ``penalty`` plus its penalty; so not comparable across
    methods: the score error is the comparable fit).
    """
    if method not in (*METHODS, "exact"):
        raise ValueError(f"unknown method {method!r}; choose one of {(*METHODS, 'exact')}")
    setting = _setting(data, seed, budget)
    langevin = dict(num_levels=budget.num_levels, steps_per_level=budget.steps_per_level)
    if method == "exact":
        trained = None
        samples = sample_with_exact_score(setting.train, setting.key_other, budget.num_samples, **langevin)
        measures = dict(nasym=0.0, score_error=0.0, ms_per_step=float("nan"), final_loss=float("nan"))
    else:
        trained = train(method, setting.train, key=setting.key_train, steps=budget.steps,
                        chunk=budget.steps // budget.chunks).trained
        samples = sample_with_model(trained.params, setting.train, setting.key_other, budget.num_samples, **langevin)
        measures = dict(
            nasym=mean_nasym(trained.params, setting.pairs.points, setting.pairs.sigmas),
            score_error=relative_score_error(model_score(trained.params), setting.pairs, setting.train,
                                             len(SIGMA_GRID)),
            ms_per_step=trained.ms_per_step,
            final_loss=float(np.mean(trained.losses[-max(1, budget.steps // 10):])),
        )
    precision, recall = precision_recall(setting.test, samples)
    row = dict(data=data, method=method, seed=seed, **measures,
               energy_distance=energy_distance(samples, setting.test), precision=precision, recall=recall)
    return Experiment(row, trained, np.asarray(samples))


def run(method: str, seed: int, budget: Budget = Budget(), *, data: str) -> dict:
    """One row of the ``scores`` table: :func:`experiment`'s row."""
    return experiment(method, seed, budget, data=data).row


def _main_rows(budget: Budget) -> list[dict]:
    """Seeds x data sets x (:data:`METHODS` and the exact score)."""
    return [run(method, seed, budget, data=data) for seed in budget.seeds for data in budget.data_sets
            for method in (*METHODS, "exact")]


COLLOCATION_DATA = "two_spirals"


def collocation_run(m: int, resample: bool, seed: int, budget: Budget = Budget()) -> dict:
    """One row of ``scores_collocation``: the null-space method on two spirals with m collocation pairs,
    fixed once or redrawn every step, trained for ``budget.collocation_steps``.

    nasym_train_pairs: NAsym on the fixed pairs themselves (fixed) or on m fresh training pairs
    (resampled); nasym, score_error: on held-out pairs, as in the main table; solver_iterations: mean per
    step over both solves (0 for the dense Gram form, which does not iterate).
    """
    setting = _setting(COLLOCATION_DATA, seed, budget)
    steps = budget.collocation_steps
    fitted = train("nullspace", setting.train, key=setting.key_train, steps=steps, chunk=steps // budget.chunks,
                   num_collocation=m, resample=resample)
    own = fitted.collocation
    if own is None:  # resampled: m fresh training pairs
        own = collocation_pairs(setting.key_other, setting.train, m)
    params = fitted.trained.params
    return dict(
        collocation="resampled" if resample else "fixed", m=m, seed=seed,
        nasym_train_pairs=mean_nasym(params, own.points, own.sigmas),
        nasym=mean_nasym(params, setting.pairs.points, setting.pairs.sigmas),
        score_error=relative_score_error(model_score(params), setting.pairs, setting.train, len(SIGMA_GRID)),
        ms_per_step=fitted.trained.ms_per_step,
        solver_iterations=float(np.mean(fitted.trained.projection.iterations)),
    )


def _collocation_rows(budget: Budget) -> list[dict]:
    return [collocation_run(m, resample, seed, budget) for seed in budget.seeds for m in budget.collocation_sizes
            for resample in (False, True)]


_MS_PER_STEP = ("ms per step", "low")
TABLES = {
    "scores": tables.Table(
        "scores", ("data", "method"), ("nasym", "score_error", "energy_distance", "precision", "recall", "ms_per_step"),
        _main_rows,
        columns={"data": ("data set", None), "method": ("method", None),
                 "nasym": ("asymmetry NAsym, held-out points", "low"), "score_error": ("score error", "low"),
                 "energy_distance": ("energy distance of samples", "low"), "precision": ("precision", "high"),
                 "recall": ("recall", "high"), "ms_per_step": _MS_PER_STEP},
        ranked_within=("data", "data set"), references=frozenset({"exact"})),
    "scores_collocation": tables.Table(
        "scores_collocation", ("collocation", "m"),
        ("nasym_train_pairs", "nasym", "score_error", "ms_per_step", "solver_iterations"), _collocation_rows,
        columns={"collocation": ("collocation pairs", None), "m": ("pairs m", None),
                 "nasym_train_pairs": ("NAsym on its own pairs", "low"), "nasym": ("NAsym, held-out points", "low"),
                 "score_error": ("score error", "low"), "ms_per_step": _MS_PER_STEP,
                 "solver_iterations": ("solver iterations per step", None)},
        ranked_within=("m", "m")),
}
