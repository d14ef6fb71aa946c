"""Weight sparsity as an equality constraint: c(theta) = theta_S, S the weights that must vanish.

J = dc/dtheta selects the rows S, so J^+ = J^T and the null-space step

    d = (I - J^+ J) u - gamma J^+ c    is    d_i = u_i (i not in S),   d_i = -gamma theta_i (i in S):

the free entries of the update pass unchanged, the masked ones are replaced by a step to zero
(gamma = 1: theta_S = 0 after one step, and kept there). (I - J^+ J) is a diagonal 0/1 matrix, so it
commutes with any elementwise optimiser (Adam): the orders of :func:`lsqlab.nullspace.transform` give the
same steps here, and training with the constraint (gamma = 1) is magnitude pruning with a hard mask,
reached through the closed-form projection of a :class:`lsqlab.constraints.Selection` (no solve).

Methods compared at a sparsity s (the fraction s of every weight matrix set to zero; biases are kept):

  ``plain``      plain Adam from the pretrained dense model (the reference error and step time);
  ``nullspace``  Adam through the null-space transform (gamma = 1, order "both") from the dense model;
  ``nullspace_gradual``  the same with a small gamma, (1 - gamma)^steps = 1e-4: theta_S shrinks
                 geometrically while the free weights adapt, and is set to 0 at the end;
  ``prune``      magnitude pruning, then retraining with the mask held fixed (:func:`hard_mask`: masked
                 gradient and update entries zeroed);
  ``l1``         Adam on L + lam sum |w|, then magnitude pruning to s at the end (its own mask);
  ``penalty``    Adam on L + mu/2 ||theta_S||^2, then theta_S = 0 at the end.

All but ``l1`` share one mask per level: the smallest |w| of each weight matrix of the pretrained dense
model (so that they differ only in how they enforce it); ``l1`` chooses its own mask, since choosing it
is what the penalty is for. lam and mu are chosen per level from a grid by the validation error on a
fifth of the training part of the budget's first seed (never the test part).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import baselines, constraints, data, nullspace
from lsqlab.applications import mlp, tables, training

Params = Any  # a pytree of arrays; weight matrices are the leaves with ndim >= 2
Batch = tuple[jax.Array, jax.Array]  # (inputs, integer labels)
METHODS = ("plain", "nullspace", "nullspace_gradual", "prune", "l1", "penalty")
MASKED = ("nullspace", "nullspace_gradual", "prune", "penalty")  # they enforce the dense model's mask
GRADUAL_SHRINK = 1e-4  # nullspace_gradual: gamma with (1 - gamma)^steps = GRADUAL_SHRINK


# --------------------------------------------------------------------------------------------- masks


def check_sparsity(sparsity: float) -> float:
    """Return ``sparsity`` as a float if it is in [0, 1); raise ValueError otherwise."""
    value = float(sparsity)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return value


def is_weight_matrix(leaf: Any) -> bool:
    """Pruned leaves: weight matrices (ndim >= 2); biases and scalars are kept."""
    return np.ndim(leaf) >= 2


def magnitude_mask(params: Params, sparsity: float) -> Params:
    """Boolean pytree, True where a weight is pruned: in each weight matrix of n entries the
    round(s n) entries of smallest |w| (exactly that many; ties broken deterministically); all False
    for other leaves."""
    sparsity = check_sparsity(sparsity)

    def leaf_mask(leaf: Any) -> np.ndarray:
        magnitudes = np.abs(np.asarray(leaf)).ravel()
        mask = np.zeros(magnitudes.size, bool)
        if is_weight_matrix(leaf):
            pruned = int(round(sparsity * magnitudes.size))
            if pruned > 0:
                mask[np.argpartition(magnitudes, pruned - 1)[:pruned]] = True
        return mask.reshape(np.shape(leaf))

    return jax.tree.map(leaf_mask, params)


def prune(params: Params, mask: Params) -> Params:
    """theta with theta_S set to exactly 0."""
    _check_mask(params, mask)
    return jax.tree.map(lambda leaf, m: jnp.where(m, jnp.zeros_like(leaf), leaf), params, mask)


def surviving_fraction(params: Params) -> float:
    """Number of exactly non-zero entries of the weight matrices over their size."""
    weights = [np.asarray(leaf) for leaf in jax.tree.leaves(params) if is_weight_matrix(leaf)]
    if not weights:
        raise ValueError("params have no weight matrix (no leaf with ndim >= 2)")
    return sum(int(np.count_nonzero(w)) for w in weights) / sum(w.size for w in weights)


def mask_violation(params: Params, mask: Params) -> float:
    """max |theta_i| over the masked entries i in S: ||c(theta)||_inf."""
    _check_mask(params, mask)
    pairs = zip(jax.tree.leaves(params), jax.tree.leaves(mask))
    values = [np.abs(np.asarray(leaf))[np.asarray(m)] for leaf, m in pairs]
    return float(max((v.max() for v in values if v.size), default=0.0))


def _check_mask(params: Params, mask: Params) -> None:
    if jax.tree.structure(params) != jax.tree.structure(mask):
        raise ValueError(
            f"mask {jax.tree.structure(mask)} and params {jax.tree.structure(params)} are different pytrees")
    for leaf, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)):
        if np.shape(leaf) != np.shape(m):
            raise ValueError(f"mask leaf of shape {np.shape(m)} where params has {np.shape(leaf)}")


def brightness_invariance(params: Params) -> jax.Array:
    """c = W_1^T 1, the column sums of the first weight matrix: then f(x + t 1) = f(x) for every
    brightness shift t. A linear constraint whose J is not a selection (the contrast case for the
    order of projection and Adam)."""
    return jnp.sum(params[0]["w"], axis=0)


# ------------------------------------------------------------------------------------- loss, error


def cross_entropy(params: Params, batch: Batch) -> jax.Array:
    """Mean softmax cross-entropy of the MLP's logits on a batch (x, y) of inputs and labels."""
    x, y = batch
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(mlp.apply(params, x), y))


def error_rate(params: Params, x: Any, y: Any) -> float:
    """Fraction of misclassified points (argmax of the logits)."""
    return float(jnp.mean(jnp.argmax(mlp.apply(params, jnp.asarray(x)), axis=-1) != jnp.asarray(y)))


def l1_norm(params: Params) -> jax.Array:
    """sum |w| over the weight matrices."""
    return sum(jnp.sum(jnp.abs(leaf)) for leaf in jax.tree.leaves(params) if is_weight_matrix(leaf))


def minibatches(x: Any, y: Any, *, steps: int, batch_size: int, key: jax.Array) -> training.Batches:
    """``steps`` minibatches of (x, y) for :func:`lsqlab.applications.training.train`, each drawn
    without replacement by its own key of ``jax.random.split(key, steps)``."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the {x.shape[0]} training points")

    def draw(step_key: jax.Array, points: Batch) -> tuple[Batch, dict]:
        inputs, labels = points
        chosen = jax.random.choice(step_key, inputs.shape[0], (batch_size,), replace=False)
        return (inputs[chosen], labels[chosen]), {}

    return training.Batches(jax.random.split(key, steps), draw, (x, y))


# ---------------------------------------------------------------------------------------- optimisers


def hard_mask(base: optax.GradientTransformation, mask: Params) -> optax.GradientTransformation:
    """The null-space step for c = theta_S in closed form, by masking: d = K base(K g) - (I - K) theta,
    K = diag(1 - mask). Masked entries land on exactly 0 and stay there; from pruned parameters this is
    retraining with a fixed mask. Its ``update`` needs ``params``."""

    def update(updates: Params, state: Any, params: Params = None) -> tuple[Params, Any]:
        if params is None:
            raise ValueError("hard_mask needs params: call update(updates, state, params)")
        zeroed = jax.tree.map(lambda u, m: jnp.where(m, jnp.zeros_like(u), u), updates, mask)
        step, state = base.update(zeroed, state, params)
        return jax.tree.map(lambda d, theta, m: jnp.where(m, -theta, d), step, params, mask), state

    return optax.GradientTransformation(base.init, update)


def nullspace_optimizer(base: optax.GradientTransformation, mask: Params, *, gamma: float = 1.0,
                        order: str = "both") -> Any:
    """``base`` through the null-space transform for c = theta_S (gamma = 1: theta_S = 0 after the
    first step; gamma < 1: theta_S shrinks by the factor 1 - gamma per step). The constraint is a
    :class:`lsqlab.constraints.Selection`, so each projection is a mask in closed form (no solve)."""
    return nullspace.transform(base, constraints.sparsity(mask), gamma=gamma, order=order)


# ------------------------------------------------------------------------------- the digits comparison


@dataclass(frozen=True)
class Budget:
    """The digits comparison: an MLP 64-300-100-10 (the LeNet-300-100 shape on 8x8 inputs), Adam with
    minibatches; ``pretrain_steps`` dense steps per seed, then ``steps`` of every method from the dense
    model at each of ``levels``. ``l1_strengths`` / ``penalty_strengths``: the candidate lam / mu (one
    candidate: taken without selection). Every training runs in ``chunks`` compiled chunks (the samples
    of its ms per step), so ``chunks`` must divide both step counts. The defaults are the recorded table."""

    seeds: tuple[int, ...] = (0, 1, 2)
    levels: tuple[float, ...] = (0.8, 0.9, 0.95)
    sizes: tuple[int, ...] = (64, 300, 100, 10)
    pretrain_steps: int = 2000
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    chunks: int = 10
    l1_strengths: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    penalty_strengths: tuple[float, ...] = (1.0, 10.0, 100.0)

    def __post_init__(self) -> None:
        if not (self.chunks >= 1 and self.steps % self.chunks == 0 and self.pretrain_steps % self.chunks == 0):
            raise ValueError(f"chunks must divide steps and pretrain_steps, got chunks={self.chunks}, "
                             f"steps={self.steps}, pretrain_steps={self.pretrain_steps}")


SMOKE = Budget(seeds=(0,), levels=(0.9,), pretrain_steps=300, steps=60, l1_strengths=(1e-3,),
               penalty_strengths=(10.0,))


class Setting(NamedTuple):
    """A method's training problem: start, loss, optimiser, what is done to the result, and the magnitude
    mask of the dense model at the level."""

    start: Params
    loss: Callable[[Params, Batch], jax.Array]
    tx: Any
    finish: Callable[[Params], Params]
    mask: Params


def setting(method: str, dense: Params, sparsity: float, budget: Budget, strength: float = 0.0) -> Setting:
    """The training problem of ``method`` (one of METHODS) at ``sparsity``, from the dense model.

    ``strength`` is lam for "l1" and mu for "penalty" (> 0 there, ignored otherwise); ``budget.steps``
    sets gamma = 1 - GRADUAL_SHRINK^(1/steps) for "nullspace_gradual".
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sparsity = check_sparsity(sparsity)
    if method in ("l1", "penalty") and not strength > 0:
        raise ValueError(f"{method} needs strength > 0, got {strength}")
    adam = optax.adam(budget.learning_rate)
    mask = magnitude_mask(dense, sparsity)
    if method == "plain":
        return Setting(dense, cross_entropy, adam, lambda theta: theta, mask)
    if method in ("nullspace", "nullspace_gradual"):
        gamma = 1.0 if method == "nullspace" else 1.0 - GRADUAL_SHRINK ** (1.0 / budget.steps)
        return Setting(dense, cross_entropy, nullspace_optimizer(adam, mask, gamma=gamma),
                       lambda theta: prune(theta, mask), mask)
    if method == "prune":
        return Setting(prune(dense, mask), cross_entropy, hard_mask(adam, mask), lambda theta: theta, mask)
    if method == "l1":
        loss = lambda theta, batch: cross_entropy(theta, batch) + strength * l1_norm(theta)  # noqa: E731
        return Setting(dense, loss, adam, lambda theta: prune(theta, magnitude_mask(theta, sparsity)), mask)
    penalized = baselines.quadratic_penalty(cross_entropy, constraints.sparsity(mask), strength)
    return Setting(dense, penalized, adam, lambda theta: prune(theta, mask), mask)


def digits_split(seed: int, test_fraction: float = 0.25) -> data.Split:
    """The 8x8 digits as 64 features in [0, 1] (float32), split at random by ``seed``."""
    images, labels = data.digits()
    features = images.reshape(len(images), -1).astype(np.float32)
    return data.split(features, labels, test_fraction=test_fraction, seed=seed)


def pretrain(split: data.Split, budget: Budget, key: jax.Array) -> Params:
    """The dense model: a float32 MLP of ``budget.sizes`` from a LeCun initialisation, Adam on the
    training part."""
    init_key, train_key = jax.random.split(key)
    params = mlp.init(init_key, budget.sizes, jnp.float32)
    batches = minibatches(split.x_train, split.y_train, steps=budget.pretrain_steps, batch_size=budget.batch_size,
                          key=train_key)
    return training.train(cross_entropy, optax.adam(budget.learning_rate), params, batches,
                          chunk=budget.pretrain_steps // budget.chunks).params


@functools.lru_cache(maxsize=4)
def dense_model(seed: int, budget: Budget, validation: bool = False) -> tuple[data.Split, Params]:
    """The split of ``seed`` and the dense model pretrained on it (once per seed and budget: every method
    and level starts from it). ``validation``: the training part split again 4:1 by ``seed``, its fifth
    held out as the "test" part (for choosing strengths; the real test part is not used)."""
    split = digits_split(seed)
    if validation:
        split = data.split(split.x_train, split.y_train, test_fraction=0.2, seed=seed)
    return split, pretrain(split, budget, jax.random.PRNGKey(seed))


def evaluate(method: str, dense: Params, sparsity: float, split: data.Split, budget: Budget, *, key: jax.Array,
             strength: float = 0.0) -> dict:
    """Train ``method`` from ``dense`` on ``split``'s training part; its test error (on the test part)
    and surviving fraction after ``finish``, and before it the test error and the largest masked |w|
    (for nullspace: the violation it leaves; the error must not change when it is zeroed), the final
    training loss (mean of the last 10 steps) and the ms per step (:class:`training.Trained`'s)."""
    problem = setting(method, dense, sparsity, budget, strength)
    batches = minibatches(split.x_train, split.y_train, steps=budget.steps, batch_size=budget.batch_size, key=key)
    trained = training.train(problem.loss, problem.tx, problem.start, batches, chunk=budget.steps // budget.chunks)
    final = problem.finish(trained.params)
    return dict(
        test_error=error_rate(final, split.x_test, split.y_test),
        surviving=surviving_fraction(final),
        error_before_finish=error_rate(trained.params, split.x_test, split.y_test),
        violation_before_finish=mask_violation(trained.params, problem.mask) if method in MASKED else float("nan"),
        final_loss=float(np.mean(trained.losses[-10:])),
        ms_per_step=trained.ms_per_step,
    )


@functools.lru_cache(maxsize=16)
def select_strength(method: str, sparsity: float, budget: Budget) -> float:
    """lam ("l1") or mu ("penalty") at ``sparsity``: the candidate of ``budget`` with the lowest validation
    error after the finish (:func:`dense_model` with ``validation=True`` on ``budget.seeds[0]``); a single
    candidate is taken as is."""
    grids = {"l1": budget.l1_strengths, "penalty": budget.penalty_strengths}
    if method not in grids or not grids[method]:
        raise ValueError(f"strengths are chosen for {sorted(grids)} from a non-empty grid; got {method!r}, {grids}")
    if len(grids[method]) == 1:
        return grids[method][0]
    seed = budget.seeds[0]
    split, dense = dense_model(seed, budget, validation=True)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    errors = [evaluate(method, dense, sparsity, split, budget, key=key, strength=strength)["test_error"]
              for strength in grids[method]]
    return grids[method][int(np.argmin(errors))]


def run(method: str, seed: int, budget: Budget = Budget(), *, sparsity: float = 0.0) -> dict:
    """One row of the table: ``method`` at ``sparsity`` from the dense model of ``seed`` (:func:`dense_model`),
    ``budget.steps`` steps on the minibatches of ``jax.random.fold_in(PRNGKey(seed), 1)`` (the same for every
    method), with the strength of :func:`select_strength` for "l1" and "penalty" (0 for the others).
    "plain" trains the dense model further and takes ``sparsity`` 0. The table adds "overhead"."""
    if method == "plain" and sparsity != 0:
        raise ValueError(f"plain trains the dense model: its sparsity is 0, got {sparsity}")
    sparsity = check_sparsity(sparsity)
    split, dense = dense_model(seed, budget)
    strength = select_strength(method, sparsity, budget) if method in ("l1", "penalty") else 0.0
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    result = evaluate(method, dense, sparsity, split, budget, key=key, strength=strength)
    return dict(method=method, sparsity=sparsity, seed=seed, strength=strength, **result)


def comparison(budget: Budget) -> list[dict]:
    """Per seed: "plain", then every other method at every level; "overhead" is a run's ms per step over
    plain's in the same seed."""
    rows = []
    for seed in budget.seeds:
        runs = [run("plain", seed, budget)]
        runs += [run(method, seed, budget, sparsity=level) for level in budget.levels for method in METHODS[1:]]
        rows += [dict(row, overhead=row["ms_per_step"] / runs[0]["ms_per_step"]) for row in runs]
    return rows


TABLES = {"sparsity": tables.Table(
    name="sparsity",
    by=("sparsity", "method"),
    metrics=("test_error", "surviving", "error_before_finish", "violation_before_finish", "ms_per_step",
             "overhead"),
    rows=comparison,
    columns={
        "sparsity": ("fraction of weights zeroed", None), "method": ("method", None),
        "test_error": ("test error", "low"), "surviving": ("fraction of weights left", None),
        "error_before_finish": ("test error before the final zeroing", None),
        "violation_before_finish": ("largest masked weight before the final zeroing", None),
        "ms_per_step": ("ms per step", "low"), "overhead": ("time per step / plain Adam's", "low"),
    },
    ranked_within=("sparsity", "level of sparsity"),
    references=frozenset({"plain"}),
)}
