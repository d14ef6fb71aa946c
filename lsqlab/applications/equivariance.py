"""C4-invariant classification of scikit-learn's 8x8 digits, eight ways.

The group C4 acts on an image x by quarter turns, r^k x = rot90(x, k). A classifier f (logits) is
*invariant* when f(r x) = f(x) for every x. Ways to get there, all with the same MLP
64 -> hidden -> 10 (tanh), softmax cross-entropy and Adam:

  plain                 no constraint;
  augmentation          each training image turned by a random quarter turn at every step;
  group_average         f_avg(x) = 1/4 sum_k f(r^k x): exactly invariant by construction;
  penalty               L(theta) + mu/2 ||c(theta)||^2            (:func:`lsqlab.baselines.quadratic_penalty`);
  augmented_lagrangian  L + lambda^T c + rho/2 ||c||^2, dual ascent lambda <- lambda + eta c
                        (:func:`lsqlab.baselines.augmented_lagrangian`, eta = ``al_dual_step``);
  null_space            d = P adam(P g) - gamma J^+ c, P = I - J^+ J (:func:`lsqlab.nullspace.transform`, order "both");

and penalty_resampled, null_space_resampled: the same with c on the first K images of each batch.
The constrained methods meet c on K *collocation* images x_1..x_K (by default K fixed training images):

  c(theta) = [f(r^k x_j) - f(x_j)]  for k = 1, 2, 3 and j = 1..K      (m = 3 * K * 10 entries).

All three non-trivial turns appear, not only the generator r: on a finite set, f(r x) = f(x) at x says
nothing about f(r^2 x) unless r x is a collocation point too. The null-space method needs m < p
(p = number of parameters); :func:`check_collocation` says so before training.

Precision: float32. Measured on seed 0 with the default Config (2 shared cores, under load): float64
gives the same accuracies (0.964 / 0.967 upright) and the same ||c|| on the collocation images (0.14 in
both, limited by the steps' second-order drift and the capped solves, not by rounding), while a
null-space step takes 32-38 ms against 14-23 ms in float32 (``--dtype float64`` reruns the table so).

Solves: by default CG on the Gram form (J J^T) y = r (:mod:`lsqlab.multipliers`), warm-started from
the previous step's multipliers, 3 iterations per solve (two solves per step, order "both"), with a
rank-128 Nystrom preconditioner of J J^T rebuilt every 100 steps. Each iteration costs one JVP and one
VJP of the network on the 4 x K images, about one plain training step (null_space_resampled, whose
points change every step, keeps LSMR: see :func:`train_null_space`). ``Config(gram=None)`` gives
the earlier LSMR solves from zero (atol = btol = 1e-4, capped at 20 iterations): the same ||c|| and
accuracies at 3.5-4 times the time; the measured trade-off curve (iterations, warm or cold, rank of
the preconditioner against cost, ||c|| and accuracy) is in benchmarks/README.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import baselines, constraints, data, multipliers, nullspace
from lsqlab.applications import mlp

METHODS = ("plain", "augmentation", "group_average", "penalty", "penalty_resampled", "augmented_lagrangian",
           "null_space", "null_space_resampled")
POINTS = {  # where each method meets the constraint
    "plain": "-", "augmentation": "-", "group_average": "-",
    "penalty": "fixed", "penalty_resampled": "per batch", "augmented_lagrangian": "fixed",
    "null_space": "fixed", "null_space_resampled": "per batch",
}
NUM_CLASSES = 10
IMAGE_SIDE = 8
# The default null-space solve: CG on the Gram form, warm-started, 3 iterations per solve, with a rank-128
# Nystrom preconditioner rebuilt every 100 steps: the cheapest point of the measured trade-off curve
# (benchmarks/README.md) that keeps ||c|| and the accuracies of LSMR capped at 20 iterations.
GRAM = multipliers.GramCG(rtol=1e-2, maxiter=3, rank=128, refresh_every=100)
TURNS = (1, 2, 3)  # the non-trivial elements r, r^2, r^3 of C4

ModelFn = Callable[[Any, jax.Array], jax.Array]


@dataclass(frozen=True)
class Config:
    """Sizes and hyperparameters of one training run (the same for every method).

    penalty_mu and al_rho multiply the *sum* of squared constraint entries; learning_rate is Adam's.
    al_dual_step is the augmented Lagrangian's dual step eta (None: eta = al_rho, the classical coupling).
    The defaults of penalty_mu, al_rho and al_dual_step are the best of the grids of
    ``benchmarks/app_equivariance.py --tune`` (rotated accuracy on seed 0).
    gamma is the null-space correction's fraction of c removed per step. ``gram`` chooses the
    null-space solves (:mod:`lsqlab.multipliers`): CG on the Gram form warm-started from the previous
    step's multipliers (the default), or None for LSMR from zero with atol = btol = ``tol`` and at most
    ``maxiter`` iterations per solve.
    """

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
    tol: float = 1e-4
    maxiter: int = 20
    test_fraction: float = 0.25
    eval_every: int = 100
    dtype: str = "float32"
    sizes: tuple[int, ...] = field(init=False)

    def __post_init__(self):
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.steps < 1 or self.batch < 1 or self.collocation < 1 or self.eval_every < 1:
            raise ValueError(
                f"steps, batch, collocation and eval_every must be >= 1, got {self.steps}, {self.batch}, "
                f"{self.collocation}, {self.eval_every}"
            )
        if self.steps % self.eval_every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of eval_every ({self.eval_every})")
        object.__setattr__(self, "sizes", (IMAGE_SIDE * IMAGE_SIDE, *self.hidden, NUM_CLASSES))


class Data(NamedTuple):
    """Images (n, 8, 8) in [0, 1] and labels; ``x_rotated`` is ``x_test`` with a random turn per image."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    x_rotated: jax.Array
    collocation: jax.Array


class Trained(NamedTuple):
    """A trained classifier and its history.

    history: per evaluation point (every ``eval_every`` steps) the step, the mean training objective
    over the chunk, upright test accuracy, held-out invariance error and ||c|| on the collocation points.
    seconds_per_step: mean over the compiled chunks (compilation excluded); solver_iterations: mean
    iterations per step of the null-space solves (both solves of a step; NaN for methods without one).
    """

    method: str
    params: Any
    model_fn: ModelFn
    history: dict[str, np.ndarray]
    seconds_per_step: float
    solver_iterations: float


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


def invariance_constraint(model_fn: ModelFn = classifier) -> nullspace.Constraint:
    """c(theta) = [f(r^k x_j) - f(x_j)], k = 1, 2, 3, over collocation images: ``c(params, inputs=X)``."""
    return constraints.equivariance(
        model_fn, [partial(rotate, k=k) for k in TURNS], [lambda outputs: outputs] * len(TURNS)
    )


def num_constraints(num_collocation: int) -> int:
    """m = 3 turns x K images x 10 logits."""
    return len(TURNS) * num_collocation * NUM_CLASSES


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


def prepare(seed: int, config: Config) -> Data:
    """Seeded split of the digits (test_fraction of 1797), rotated test set, first K training images as
    collocation points; arrays in ``config.dtype``."""
    images, labels = data.digits()
    parts = data.split(images, labels, test_fraction=config.test_fraction, seed=seed)
    if config.collocation > len(parts.x_train):
        raise ValueError(f"collocation ({config.collocation}) exceeds the {len(parts.x_train)} training images")
    turns = np.random.default_rng([seed, 1]).integers(0, 4, len(parts.x_test))
    as_float = partial(jnp.asarray, dtype=config.dtype)
    return Data(
        x_train=as_float(parts.x_train), y_train=jnp.asarray(parts.y_train, jnp.int32),
        x_test=as_float(parts.x_test), y_test=jnp.asarray(parts.y_test, jnp.int32),
        x_rotated=as_float(data.rotate_c4(parts.x_test, turns)),
        collocation=as_float(parts.x_train[: config.collocation]),
    )


# ---------------------------------------------------------------------------------------------------
# Evaluation


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


def evaluate(trained: Trained, prepared: Data) -> dict[str, float]:
    """Accuracies (upright, rotated), invariance errors (held-out test images, collocation images),
    ||c|| on the collocation images, ms per step and solver iterations per step."""
    f, params = trained.model_fn, trained.params
    return {
        "acc_upright": accuracy(f, params, prepared.x_test, prepared.y_test),
        "acc_rotated": accuracy(f, params, prepared.x_rotated, prepared.y_test),
        "inv_err_heldout": invariance_error(f, params, prepared.x_test),
        "inv_err_collocation": invariance_error(f, params, prepared.collocation),
        "violation": violation(f, params, prepared.collocation),
        "ms_per_step": 1e3 * trained.seconds_per_step,
        "solver_iterations": trained.solver_iterations,
    }


# ---------------------------------------------------------------------------------------------------
# Training: one function per method, one shared loop


def train_plain(prepared: Data, config: Config, seed: int) -> Trained:
    """Adam on the cross-entropy of f."""
    return _fit("plain", classifier, optax.adam(config.learning_rate), _unconstrained_loss(classifier),
                prepared, config, seed)


def train_augmentation(prepared: Data, config: Config, seed: int) -> Trained:
    """Adam on the cross-entropy of f at r^k x, with a fresh random k in {0..3} per image and step."""
    return _fit("augmentation", classifier, optax.adam(config.learning_rate), _unconstrained_loss(classifier),
                prepared, config, seed, augment=True)


def train_group_average(prepared: Data, config: Config, seed: int) -> Trained:
    """Adam on the cross-entropy of f_avg (four forward passes per image)."""
    return _fit("group_average", group_averaged, optax.adam(config.learning_rate),
                _unconstrained_loss(group_averaged), prepared, config, seed)


def train_penalty(prepared: Data, config: Config, seed: int, *, resample: bool = False) -> Trained:
    """Adam on L(theta) + mu/2 ||c(theta)||^2; c on the fixed collocation images, or (``resample``) on the
    first K images of each batch."""
    penalized = baselines.quadratic_penalty(partial(cross_entropy, classifier), invariance_constraint(),
                                            config.penalty_mu)

    def loss(params, images, labels, points):
        return penalized(params, images, labels, constraint_args={"inputs": points})

    return _fit("penalty_resampled" if resample else "penalty", classifier, optax.adam(config.learning_rate),
                loss, prepared, config, seed, resample=resample)


def train_augmented_lagrangian(prepared: Data, config: Config, seed: int) -> Trained:
    """Adam steps on L + lambda^T c + rho/2 ||c||^2, multipliers lambda <- lambda + eta c every step
    (rho = ``al_rho``, eta = ``al_dual_step``).

    Only on fixed collocation images: each multiplier belongs to one entry of c, i.e. one image.
    """
    optimizer = baselines.augmented_lagrangian(
        optax.adam(config.learning_rate), invariance_constraint(), rho=config.al_rho,
        num_constraints=num_constraints(config.collocation), dual_step=config.al_dual_step,
    )
    return _fit("augmented_lagrangian", classifier, optimizer, _unconstrained_loss(classifier), prepared, config,
                seed, optimizer_takes_points=True)


def train_null_space(prepared: Data, config: Config, seed: int, *, resample: bool = False) -> Trained:
    """Adam wrapped by the null-space transform (order "both"): every step keeps c = 0 to first order
    and removes the fraction gamma of the current violation. c on the fixed collocation images, or
    (``resample``) on the first K images of each batch.

    Resampled points change J entirely from one step to the next: the previous step's multipliers and
    preconditioner say nothing about the new J, so those steps use LSMR from zero (``config.tol``,
    ``config.maxiter``) whatever ``config.gram`` says (3 Gram-form CG iterations from stale multipliers
    left 3x the violation and 4x the held-out invariance error, measured on 3 seeds).
    """
    check_collocation(config.collocation, num_params(config))
    optimizer = nullspace.transform(
        optax.adam(config.learning_rate), invariance_constraint(), gamma=config.gamma, order="both",
        atol=config.tol, btol=config.tol, maxiter=config.maxiter, gram=None if resample else config.gram,
        num_constraints=num_constraints(config.collocation),
    )
    return _fit("null_space_resampled" if resample else "null_space", classifier, optimizer,
                _unconstrained_loss(classifier), prepared, config, seed, resample=resample,
                optimizer_takes_points=True)


TRAINERS: dict[str, Callable[[Data, Config, int], Trained]] = {
    "plain": train_plain,
    "augmentation": train_augmentation,
    "group_average": train_group_average,
    "penalty": train_penalty,
    "penalty_resampled": partial(train_penalty, resample=True),
    "augmented_lagrangian": train_augmented_lagrangian,
    "null_space": train_null_space,
    "null_space_resampled": partial(train_null_space, resample=True),
}


def train(method: str, prepared: Data, config: Config, seed: int) -> Trained:
    """Train ``method`` (one of :data:`METHODS`) on ``prepared`` with ``config``, seeded by ``seed``."""
    if method not in TRAINERS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return TRAINERS[method](prepared, config, seed)


def run(method: str, seed: int, config: Config) -> tuple[dict, Trained]:
    """Prepare the data of ``seed``, train ``method`` and evaluate: a table row and the trained model."""
    prepared = prepare(seed, config)
    trained = train(method, prepared, config, seed)
    row = {"method": method, "points": POINTS[method], "seed": seed, **evaluate(trained, prepared)}
    return row, trained


def num_params(config: Config) -> int:
    """p of the MLP with layer widths ``config.sizes`` (from the shapes alone: nothing is initialised)."""
    return mlp.count(jax.eval_shape(partial(mlp.init, sizes=config.sizes), jax.random.key(0)))


def _unconstrained_loss(model_fn: ModelFn) -> Callable:
    """The cross-entropy in the loop's signature ``loss(params, images, labels, points)``, points unused."""

    def loss(params, images, labels, points):
        return cross_entropy(model_fn, params, images, labels)

    return loss


def _fit(method: str, model_fn: ModelFn, optimizer: Any, loss_fn: Callable, prepared: Data, config: Config,
         seed: int, *, augment: bool = False, resample: bool = False, optimizer_takes_points: bool = False,
         ) -> Trained:
    """Minibatch training in compiled chunks of ``eval_every`` steps (a ``lax.scan`` each).

    ``loss_fn(params, images, labels, points)`` and, with ``optimizer_takes_points``,
    ``optimizer.update(grads, state, params, inputs=points)`` see the collocation images ``points``: the
    fixed ones, or with ``resample`` the first K images of the step's batch. Batches (and, with
    ``augment``, quarter turns) come from ``numpy.random.default_rng(seed)``, the initial parameters
    from ``jax.random.key(seed)``. The chunk is compiled ahead of time: the timing excludes compilation.
    """
    params = mlp.init(jax.random.key(seed), config.sizes, jnp.dtype(config.dtype))
    rng = np.random.default_rng(seed)
    chunks = config.steps // config.eval_every
    batches = rng.integers(0, prepared.x_train.shape[0], (chunks, config.eval_every, config.batch))
    turns = rng.integers(0, 4, batches.shape) if augment else np.zeros(batches.shape, np.int64)

    def step(carry, batch, arrays):
        params, state = carry
        indices, batch_turns = batch
        x_train, y_train, collocation = arrays
        images = x_train[indices]
        if augment:
            images = rotate_each(images, batch_turns)
        points = images[: config.collocation] if resample else collocation
        value, grads = jax.value_and_grad(loss_fn)(params, images, y_train[indices], points)
        if optimizer_takes_points:
            updates, state = optimizer.update(grads, state, params, inputs=points)
        else:
            updates, state = optimizer.update(grads, state, params)
        iterations = state.info.iterations if isinstance(state, nullspace.NullSpaceState) else jnp.int32(0)
        return (optax.apply_updates(params, updates), state), (value, iterations)

    def chunk(carry, indices, chunk_turns, arrays):
        return jax.lax.scan(partial(step, arrays=arrays), carry, (indices, chunk_turns))

    # the data are arguments, not constants: one executable per method and sizes, whatever the seed
    arrays = (prepared.x_train, prepared.y_train, prepared.collocation)
    carry = (params, optimizer.init(params))
    compiled = jax.jit(chunk).lower(carry, batches[0], turns[0], arrays).compile()
    history = {key: [] for key in ("step", "loss", "acc_upright", "inv_err_heldout", "violation")}
    iterations, seconds = [], 0.0
    for i in range(chunks):
        start = time.perf_counter()
        carry, (values, its) = compiled(carry, batches[i], turns[i], arrays)
        jax.block_until_ready(carry)
        seconds += time.perf_counter() - start
        iterations.append(np.asarray(its))
        history["step"].append((i + 1) * config.eval_every)
        history["loss"].append(float(jnp.mean(values)))
        history["acc_upright"].append(accuracy(model_fn, carry[0], prepared.x_test, prepared.y_test))
        history["inv_err_heldout"].append(invariance_error(model_fn, carry[0], prepared.x_test))
        history["violation"].append(violation(model_fn, carry[0], prepared.collocation))
    solves = isinstance(carry[1], nullspace.NullSpaceState)
    solver_iterations = float(np.mean(np.concatenate(iterations))) if solves else float("nan")
    return Trained(method, carry[0], model_fn, {k: np.asarray(v) for k, v in history.items()},
                   seconds / config.steps, solver_iterations)
