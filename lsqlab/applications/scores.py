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

This module is the application (methods, training, tables); its parts are the model and DSM
(:mod:`~lsqlab.applications.score_model`), the measures (:mod:`~lsqlab.applications.score_measures`) and
the sampler (:mod:`~lsqlab.applications.langevin`), whose public names are importable from here too.
"""

from __future__ import annotations

from functools import lru_cache
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import baselines, constraints, multipliers, nullspace
from lsqlab.applications import score_model, tables, training
from lsqlab.applications.langevin import annealed_langevin, langevin_levels, sample_with_exact_score, sample_with_model
from lsqlab.applications.score_measures import (
    energy_distance, evaluation_pairs, exact_log_density, exact_score, mean_nasym, nasym, precision_recall,
    relative_score_error,
)
from lsqlab.applications.score_model import (
    DIM, SIGMA_MAX, SIGMA_MIN, NoisedBatch, Params, dsm_loss, model_score, noise_batch, scaled_score, score,
    score_jacobians,
)
from lsqlab.data import TOY_2D, toy_2d
from lsqlab.solver import SolverOptions

METHODS = ("plain", "energy", "penalty", "nullspace")

__all__ = [  # the application's own names, and its parts' (as the notebooks use them)
    "METHODS", "SMOKE", "TABLES", "Budget", "Experiment", "Run", "asymmetry_constraint", "collocation_pairs",
    "collocation_run", "experiment", "init_model", "run", "train", "COLLOCATION_DATA", "GAMMA", "LEARNING_RATE",
    "LSMR_OPTIONS", "MU", "SIGMA_GRID",
    "DIM", "SIGMA_MAX", "SIGMA_MIN", "NoisedBatch", "Params", "dsm_loss", "model_score", "noise_batch",
    "scaled_score", "score", "score_jacobians",
    "energy_distance", "evaluation_pairs", "exact_log_density", "exact_score", "mean_nasym", "nasym",
    "precision_recall", "relative_score_error",
    "annealed_langevin", "langevin_levels", "sample_with_exact_score", "sample_with_model",
]


def init_model(key: jax.Array, method: str, *, width: int = 64, depth: int = 3, dtype=jnp.float64) -> Params:
    """The model of ``method`` (:func:`score_model.init_model`): an energy for ``energy``, else a vector field."""
    _check_method(method)
    return score_model.init_model(key, energy=method == "energy", width=width, depth=depth, dtype=dtype)


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
