"""C4-invariant classification of scikit-learn's 8x8 digits, eight ways.

The group C4 acts on an image x by quarter turns, r^k x = rot90(x, k). A classifier f (logits) is
*invariant* when f(r x) = f(x) for every x. Ways to get there, all with the same MLP
64 -> hidden -> 10 (tanh), softmax cross-entropy and Adam, trained by the shared loop
(:func:`lsqlab.applications.training.train`):

  plain                 no constraint;
  augmentation          each training image turned by a random quarter turn at every step;
  group_average         f_avg(x) = 1/4 sum_k f(r^k x): exactly invariant by construction;
  penalty               L(theta) + mu/2 ||c(theta)||^2            (:func:`lsqlab.baselines.quadratic_penalty`);
  augmented_lagrangian  L + lambda^T c + rho/2 ||c||^2, dual ascent lambda <- lambda + eta c
                        (:func:`lsqlab.baselines.augmented_lagrangian`, eta = ``al_dual_step``);
  nullspace             d = P adam(P g) - gamma J^+ c, P = I - J^+ J (:func:`lsqlab.nullspace.transform`, order "both");

and penalty_resampled, nullspace_resampled: the same with c on the first K images of each batch.
The constrained methods meet c on K *collocation* images x_1..x_K (by default K fixed training images):

  c(theta) = [f(r^k x_j) - f(x_j)]  for k = 1, 2, 3 and j = 1..K      (m = 3 * K * 10 entries).

All three non-trivial turns appear, not only the generator r: on a finite set, f(r x) = f(x) at x says
nothing about f(r^2 x) unless r x is a collocation point too. The null-space method needs m < p
(p = number of parameters); :func:`check_collocation` says so before training.

Precision: ``Budget.dtype``, float32 for the tables (float64 needs ``jax_enable_x64``). What the
null-space method leaves of ||c|| comes from each step's second-order drift and the capped solves, not
from rounding.

Solves: on fixed points, CG on the Gram form (J J^T) y = r (:data:`GRAM`, :mod:`lsqlab.multipliers`),
warm-started from the previous step's multipliers, a few iterations per solve (two solves per step,
order "both"), with a Nystrom preconditioner of J J^T rebuilt every few hundred steps. Each iteration
costs one JVP and one VJP of the network on the 4 x K images, about one plain training step.
``Budget(gram=None)`` gives LSMR solves from zero, stopped by ``Budget.solver``; resampled points always
use those (see :func:`objective`). ``benchmarks/bench_nullspace.py`` measures the trade-off (iterations,
warm or cold start, rank of the preconditioner against cost, ||c|| and accuracy).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import baselines, constraints, data, multipliers, nullspace
from lsqlab.applications import mlp, tables, training
from lsqlab.solver import SolverOptions

METHODS = ("plain", "augmentation", "group_average", "penalty", "penalty_resampled", "augmented_lagrangian",
           "nullspace", "nullspace_resampled")
POINTS = {  # where each method meets the constraint
    "plain": "-", "augmentation": "-", "group_average": "-",
    "penalty": "fixed", "penalty_resampled": "per batch", "augmented_lagrangian": "fixed",
    "nullspace": "fixed", "nullspace_resampled": "per batch",
}
NUM_CLASSES = 10
IMAGE_SIDE = 8
# The default null-space solve on fixed points: CG on the Gram form, warm-started, 3 iterations per solve,
# with a rank-128 Nystrom preconditioner rebuilt every 100 steps: the cheapest point of the trade-off
# measured by benchmarks/bench_nullspace.py that keeps ||c|| and the accuracies of LSMR capped at 20
# iterations (Budget.solver).
GRAM = multipliers.GramCG(rtol=1e-2, maxiter=3, rank=128, refresh_every=100)
TURNS = (1, 2, 3)  # the non-trivial elements r, r^2, r^3 of C4

ModelFn = Callable[[Any, jax.Array], jax.Array]


@dataclass(frozen=True)
class Budget:
    """Seeds, sizes and hyperparameters of the tables; the defaults are the full budget (recorded tables).

    penalty_mu and al_rho multiply the *sum* of squared constraint entries; learning_rate is Adam's.
    al_dual_step is the augmented Lagrangian's dual step eta (None: eta = al_rho, the classical coupling).
    The defaults of penalty_mu, al_rho and al_dual_step are the settings of best rotated accuracy in the
    table ``equivariance_tuning`` (:data:`TUNING`). gamma is the null-space correction's fraction of c
    removed per step. ``gram`` chooses the null-space solves on fixed points (:mod:`lsqlab.multipliers`):
    CG on the Gram form warm-started from the previous step's multipliers, or None for LSMR from zero,
    stopped by ``solver`` (as the resampled method's solves always are). eval_every: steps between
    evaluations (the training loop's chunk).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    hidden: tuple[int, ...] = (64, 64)
    steps: int = 1000
    batch: int = 128
    learning_rate: float = 3e-3
    collocation: int = 32
    penalty_mu: float = 1e-3
    al_rho: float = 1e-4
    al_dual_step: float | None = 1e-5
    gamma: float = 0.5
    gram: multipliers.GramCG | None = GRAM
    solver: SolverOptions = SolverOptions(atol=1e-4, btol=1e-4, conlim=1e12, maxiter=20)
    test_fraction: float = 0.25
    eval_every: int = 100
    dtype: str = "float32"

    def __post_init__(self):
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if self.steps < 1 or self.batch < 1 or self.collocation < 1 or self.eval_every < 1:
            raise ValueError(
                f"steps, batch, collocation and eval_every must be >= 1, got {self.steps}, {self.batch}, "
                f"{self.collocation}, {self.eval_every}"
            )
        if self.steps % self.eval_every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of eval_every ({self.eval_every})")

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths of the MLP: 64 pixels, the hidden layers, 10 logits."""
        return (IMAGE_SIDE * IMAGE_SIDE, *self.hidden, NUM_CLASSES)


SMOKE = Budget(seeds=(0,), steps=40, eval_every=20, collocation=8, hidden=(32, 32))


class Data(NamedTuple):
    """Images (n, 8, 8) in [0, 1] and labels; ``x_rotated`` is ``x_test`` with a random turn per image."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    x_rotated: jax.Array
    collocation: jax.Array


# ---------------------------------------------------------------------------------------------------
# The group action, the models, the constraint, the loss


def rotate(images: jax.Array, k: int) -> jax.Array:
    """r^k x: k quarter turns (counter-clockwise) of images (..., 8, 8); np.rot90's convention."""
    return jnp.rot90(images, k, axes=(-2, -1))


def rotate_each(images: jax.Array, turns: jax.Array) -> jax.Array:
    """Turn image i of a batch (n, 8, 8) by ``turns[i]`` quarter turns."""
    all_turns = jnp.stack([rotate(images, k) for k in range(4)])
    return all_turns[turns % 4, jnp.arange(images.shape[0])]


def classifier(params: mlp.Params, images: jax.Array) -> jax.Array:
    """Logits f(x) of the MLP on flattened images: (..., 8, 8) -> (..., 10)."""
    return mlp.apply(params, images.reshape(*images.shape[:-2], IMAGE_SIDE * IMAGE_SIDE))


def group_averaged(params: mlp.Params, images: jax.Array) -> jax.Array:
    """f_avg(x) = 1/4 sum_{k=0..3} f(r^k x). Invariant: f_avg(r x) sums the same four terms."""
    return sum(classifier(params, rotate(images, k)) for k in range(4)) / 4


def model(method: str) -> ModelFn:
    """The network ``method`` trains and evaluates: f_avg for group_average, f for the others."""
    return group_averaged if method == "group_average" else classifier


def invariance_constraint(model_fn: ModelFn = classifier) -> nullspace.Constraint:
    """c(theta) = [f(r^k x_j) - f(x_j)], k = 1, 2, 3, over collocation images: ``c(params, inputs=X)``."""
    return constraints.equivariance(
        model_fn, [partial(rotate, k=k) for k in TURNS], [lambda outputs: outputs] * len(TURNS)
    )


def num_constraints(num_collocation: int) -> int:
    """m = 3 turns x K images x 10 logits."""
    return len(TURNS) * num_collocation * NUM_CLASSES


def num_params(budget: Budget) -> int:
    """p of the MLP with layer widths ``budget.sizes`` (from the shapes alone: nothing is initialised)."""
    return mlp.count(jax.eval_shape(partial(mlp.init, sizes=budget.sizes), jax.random.key(0)))


def check_collocation(num_collocation: int, num_params: int) -> None:
    """Raise ValueError unless m = 30 K < p, which the null-space method needs (J: R^p -> R^m wide)."""
    m = num_constraints(num_collocation)
    if m >= num_params:
        raise ValueError(
            f"{num_collocation} collocation images give {m} constraints (3 turns x 10 logits each) but the "
            f"model has only {num_params} parameters: the null-space method needs fewer constraints than "
            "parameters; use fewer collocation images or wider hidden layers"
        )


def cross_entropy(model_fn: ModelFn, params: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of the logits model_fn(params, images) against integer labels."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model_fn(params, images), labels))


# ---------------------------------------------------------------------------------------------------
# Data


def prepare(seed: int, budget: Budget) -> Data:
    """Seeded split of the digits (test_fraction of 1797), rotated test set, first K training images as
    collocation points; arrays in ``budget.dtype``."""
    images, labels = data.digits()
    parts = data.split(images, labels, test_fraction=budget.test_fraction, seed=seed)
    if budget.collocation > len(parts.x_train):
        raise ValueError(f"collocation ({budget.collocation}) exceeds the {len(parts.x_train)} training images")
    turns = np.random.default_rng([seed, 1]).integers(0, 4, len(parts.x_test))
    as_float = partial(jnp.asarray, dtype=budget.dtype)
    return Data(
        x_train=as_float(parts.x_train), y_train=jnp.asarray(parts.y_train, jnp.int32),
        x_test=as_float(parts.x_test), y_test=jnp.asarray(parts.y_test, jnp.int32),
        x_rotated=as_float(data.rotate_c4(parts.x_test, turns)),
        collocation=as_float(parts.x_train[: budget.collocation]),
    )


# ---------------------------------------------------------------------------------------------------
# Metrics


def accuracy(model_fn: ModelFn, params: Any, images: jax.Array, labels: jax.Array) -> float:
    """Fraction of images whose largest logit is the label."""
    return float(jnp.mean(jnp.argmax(model_fn(params, images), axis=-1) == labels))


def invariance_error(model_fn: ModelFn, params: Any, images: jax.Array) -> float:
    """E ||f(r^k x) - f(x)|| / ||f(x)||, the mean over the images and k = 1, 2, 3."""
    outputs = model_fn(params, images)
    norms = jnp.linalg.norm(outputs, axis=-1)
    ratios = [jnp.linalg.norm(model_fn(params, rotate(images, k)) - outputs, axis=-1) / norms for k in TURNS]
    return float(jnp.mean(jnp.stack(ratios)))


def violation(model_fn: ModelFn, params: Any, collocation: jax.Array) -> float:
    """||c(theta)||, the constraint's norm on the collocation images (what the null-space method drives to 0)."""
    return float(jnp.linalg.norm(invariance_constraint(model_fn)(params, inputs=collocation)))


def evaluate(method: str, seed: int, trained: training.Trained, prepared: Data) -> dict:
    """The table row of ``trained``: accuracies (upright, rotated), invariance errors (held-out test
    images, collocation images), ||c|| on the collocation images, ms per step (``Trained.ms_per_step``)
    and the null-space solver's mean iterations per step (both solves of a step; NaN without one)."""
    f, params = model(method), trained.params
    projection = trained.projection
    return {
        "method": method, "points": POINTS[method], "seed": seed,
        "acc_upright": accuracy(f, params, prepared.x_test, prepared.y_test),
        "acc_rotated": accuracy(f, params, prepared.x_rotated, prepared.y_test),
        "inv_err_heldout": invariance_error(f, params, prepared.x_test),
        "inv_err_collocation": invariance_error(f, params, prepared.collocation),
        "violation": violation(f, params, prepared.collocation),
        "ms_per_step": trained.ms_per_step,
        "solver_iterations": float("nan") if projection is None else float(np.mean(projection.iterations)),
    }


# ---------------------------------------------------------------------------------------------------
# Training


@lru_cache(maxsize=16)
def objective(method: str, budget: Budget) -> tuple[Callable, optax.GradientTransformation]:
    """``(loss, tx)`` of ``method`` for :func:`lsqlab.applications.training.train` (built once per method and
    budget, so that every seed runs the same compiled chunk).

    loss(params, (images, labels, points)) is the cross-entropy of :func:`model`, plus mu/2 ||c||^2 at
    ``points`` for the penalties; tx is Adam, wrapped by the augmented Lagrangian or the null-space
    transform, whose constraint meets ``points`` through the loop's constraint arguments. The augmented
    Lagrangian runs on fixed points only: each multiplier belongs to one entry of c, i.e. one image.
    Resampled points change J entirely from one step to the next: the previous step's multipliers and
    preconditioner say nothing about the new J, so nullspace_resampled solves with LSMR from zero
    whatever ``budget.gram`` says (warm Gram-form CG from stale multipliers leaves more violation and a
    larger held-out invariance error).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    adam = optax.adam(budget.learning_rate)
    model_fn = model(method)
    constraint = invariance_constraint()

    if method.startswith("penalty"):
        penalized = baselines.quadratic_penalty(partial(cross_entropy, model_fn), constraint, budget.penalty_mu)

        def penalized_loss(params, batch):
            images, labels, points = batch
            return penalized(params, images, labels, constraint_args={"inputs": points})

        return penalized_loss, adam

    def loss(params, batch):
        images, labels, _ = batch
        return cross_entropy(model_fn, params, images, labels)

    if method == "augmented_lagrangian":
        return loss, baselines.augmented_lagrangian(
            adam, constraint, rho=budget.al_rho, num_constraints=num_constraints(budget.collocation),
            dual_step=budget.al_dual_step,
        )
    if method.startswith("nullspace"):
        check_collocation(budget.collocation, num_params(budget))
        return loss, nullspace.transform(
            adam, constraint, gamma=budget.gamma, order="both", options=budget.solver,
            gram=None if method == "nullspace_resampled" else budget.gram,
            num_constraints=num_constraints(budget.collocation),
        )
    return loss, adam


def batches(method: str, prepared: Data, budget: Budget, seed: int) -> training.Batches:
    """Minibatch indices (and augmentation's quarter turns) from ``numpy.random.default_rng(seed)``; each
    step's batch is (images, labels, points) and its constraint arguments ``{"inputs": points}``, where
    points are the fixed collocation images or, for the resampled methods, the first K images of the batch."""
    rng = np.random.default_rng(seed)
    per_step = {"indices": rng.integers(0, prepared.x_train.shape[0], (budget.steps, budget.batch))}
    if method == "augmentation":
        per_step["turns"] = rng.integers(0, 4, per_step["indices"].shape)
    arrays = (prepared.x_train, prepared.y_train, prepared.collocation)
    return training.Batches(per_step, _draw(method, budget.collocation), arrays)


@lru_cache(maxsize=16)
def _draw(method: str, collocation: int) -> Callable[[dict, tuple], tuple[tuple, dict]]:
    """The step's (images, labels, points) and constraint arguments from its indices (and turns)."""
    augment, resample = method == "augmentation", method.endswith("_resampled")

    def draw(step: dict, arrays: tuple) -> tuple[tuple, dict]:
        x_train, y_train, fixed = arrays
        images = x_train[step["indices"]]
        if augment:
            images = rotate_each(images, step["turns"])
        points = images[:collocation] if resample else fixed
        return (images, y_train[step["indices"]], points), {"inputs": points}

    return draw


def train(method: str, prepared: Data, budget: Budget, seed: int) -> training.Trained:
    """Train ``method`` (one of :data:`METHODS`) from ``mlp.init(jax.random.key(seed), ...)`` with the
    shared loop, one chunk per ``budget.eval_every`` steps. history: after each chunk the step, the mean
    objective over the chunk ("loss"), upright test accuracy, held-out invariance error and ||c|| on the
    collocation images."""
    loss, tx = objective(method, budget)
    params = mlp.init(jax.random.key(seed), budget.sizes, jnp.dtype(budget.dtype))
    f = model(method)

    def progress(params: Any) -> dict:
        return {"acc_upright": accuracy(f, params, prepared.x_test, prepared.y_test),
                "inv_err_heldout": invariance_error(f, params, prepared.x_test),
                "violation": violation(f, params, prepared.collocation)}

    trained = training.train(loss, tx, params, batches(method, prepared, budget, seed), chunk=budget.eval_every,
                             evaluate=progress)
    chunk_losses = trained.losses.reshape(-1, budget.eval_every).mean(axis=1)
    return trained._replace(history=[{"step": entry["step"], "loss": float(value), **entry}
                                     for entry, value in zip(trained.history, chunk_losses)])


def run(method: str, seed: int, budget: Budget = Budget()) -> dict:
    """Prepare the data of ``seed``, train ``method`` and evaluate: one row of the table."""
    prepared = prepare(seed, budget)
    return evaluate(method, seed, train(method, prepared, budget, seed), prepared)


# ---------------------------------------------------------------------------------------------------
# Tables

METRICS = ("acc_upright", "acc_rotated", "inv_err_heldout", "inv_err_collocation", "violation", "ms_per_step",
           "solver_iterations")
# The grids behind Budget's penalty_mu, al_rho and al_dual_step: the setting with the best rotated accuracy
# on the budget's first seed. The augmented Lagrangian's grid is 2-D (penalty weight rho x dual step eta);
# its diagonal eta = rho is the classical method of multipliers.
TUNING = {
    "penalty": {"penalty_mu": (1e-4, 1e-3, 1e-2, 1e-1, 1.0)},
    "penalty_resampled": {"penalty_mu": (1e-4, 1e-3, 1e-2, 1e-1, 1.0)},
    "augmented_lagrangian": {"al_rho": (1e-4, 1e-3, 1e-2), "al_dual_step": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)},
}
TUNED = ("penalty_mu", "al_rho", "al_dual_step")
COLUMNS = {
    "method": ("method", None), "points": ("constraint imposed on", None),
    "acc_upright": ("accuracy, upright digits", "high"), "acc_rotated": ("accuracy, turned digits", "high"),
    "inv_err_heldout": ("invariance error, test images", "low"),
    "inv_err_collocation": ("invariance error, collocation images", "low"),
    "violation": ("‖c‖ on the collocation images", "low"), "ms_per_step": ("ms per step", "low"),
    "solver_iterations": ("solver iterations per step", None),
    "penalty_mu": ("penalty weight μ", None), "al_rho": ("penalty weight ρ", None),
    "al_dual_step": ("dual step η", None),
}


def comparison(budget: Budget) -> list[dict]:
    """Every method on every seed of ``budget``."""
    return [run(method, seed, budget) for method in METHODS for seed in budget.seeds]


def tuning(budget: Budget) -> list[dict]:
    """Every setting of the grids of :data:`TUNING` on the budget's first seed (columns :data:`TUNED`,
    "-" where a parameter does not apply)."""
    seed, rows = budget.seeds[0], []
    for method, grid in TUNING.items():
        for values in itertools.product(*grid.values()):
            setting = dict(zip(grid, values))
            row = run(method, seed, replace(budget, **setting))
            rows.append({"method": method, **{p: setting.get(p, "-") for p in TUNED}, "seed": seed,
                         **{m: row[m] for m in METRICS[:5]}})
    return rows


TABLES = {
    "equivariance": tables.Table("equivariance", ("method", "points"), METRICS, comparison, COLUMNS),
    "equivariance_tuning": tables.Table("equivariance_tuning", ("method", *TUNED), METRICS[:5], tuning, COLUMNS,
                                        ranked_within=("method", "method")),
}
