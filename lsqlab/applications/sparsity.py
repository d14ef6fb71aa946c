"""Weight sparsity as an equality constraint: c(theta) = theta_S, S the weights that must vanish.

J = dc/dtheta selects the rows S, so J^+ = J^T and the null-space step

    d = (I - J^+ J) u - gamma J^+ c    is    d_i = u_i (i not in S),   d_i = -gamma theta_i (i in S):

the free entries of the update pass unchanged, the masked ones are replaced by a step to zero
(gamma = 1: theta_S = 0 after one step, and kept there). (I - J^+ J) is a diagonal 0/1 matrix, so it
commutes with any elementwise optimiser (Adam): the orders of :func:`lsqlab.nullspace.transform` give the
same steps here, and training with the constraint (gamma = 1) is magnitude pruning with a hard mask,
reached through LSMR solves (one iteration each) instead of a multiplication by the mask.

Methods compared at a sparsity s (the fraction s of every weight matrix set to zero; biases are kept):

  ``dense``      plain Adam from the pretrained dense model (the reference error and step time);
  ``nullspace``  Adam through the null-space transform (gamma = 1, order "both") from the dense model;
  ``nullspace_gradual``  the same with a small gamma, (1 - gamma)^steps = 1e-4: theta_S shrinks
                 geometrically while the free weights adapt, and is set to 0 at the end;
  ``prune``      magnitude pruning, then retraining with the mask held fixed (:func:`hard_mask`: masked
                 gradient and update entries zeroed);
  ``l1``         Adam on L + lam sum |w|, then magnitude pruning to s at the end (its own mask);
  ``penalty``    Adam on L + mu/2 ||theta_S||^2, then theta_S = 0 at the end.

All but ``l1`` share one mask per level: the smallest |w| of each weight matrix of the pretrained dense
model (so that they differ only in how they enforce it); ``l1`` chooses its own mask, since choosing it
is what the penalty is for.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import baselines, constraints, data, nullspace
from lsqlab.applications import mlp

Params = Any  # a pytree of arrays; weight matrices are the leaves with ndim >= 2
METHODS = ("dense", "nullspace", "nullspace_gradual", "prune", "l1", "penalty")
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


def cross_entropy(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of the MLP's logits on labels y."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(mlp.apply(params, x), y))


def error_rate(params: Params, x: Any, y: Any) -> float:
    """Fraction of misclassified points (argmax of the logits)."""
    return float(jnp.mean(jnp.argmax(mlp.apply(params, jnp.asarray(x)), axis=-1) != jnp.asarray(y)))


def l1_norm(params: Params) -> jax.Array:
    """sum |w| over the weight matrices."""
    return sum(jnp.sum(jnp.abs(leaf)) for leaf in jax.tree.leaves(params) if is_weight_matrix(leaf))


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


# -------------------------------------------------------------------------------------------- training


class Trained(NamedTuple):
    """Result of :func:`train`: final parameters, the loss at every step, seconds per step."""

    params: Params
    losses: np.ndarray
    seconds_per_step: float


def train(
    loss_fn: Callable[[Params, jax.Array, jax.Array], jax.Array],
    tx: optax.GradientTransformation,
    params: Params,
    x: Any,
    y: Any,
    *,
    steps: int,
    batch_size: int,
    key: jax.Array,
    timing_repeats: int = 1,
) -> Trained:
    """``steps`` optax steps on minibatches drawn without replacement from (x, y) by ``key``.

    The loop is one compiled ``lax.scan``; compilation is done ahead of time and not timed.
    ``seconds_per_step`` is the shortest run time of the compiled loop over ``timing_repeats`` runs
    (the same computation each time; the shortest is the one least disturbed by other processes),
    divided by ``steps``.
    """
    if steps < 1 or batch_size < 1 or timing_repeats < 1:
        raise ValueError(
            f"steps, batch_size and timing_repeats must be >= 1, got {steps}, {batch_size}, {timing_repeats}")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the {x.shape[0]} training points")

    def step(carry, step_key):
        theta, state = carry
        batch = jax.random.choice(step_key, x.shape[0], (batch_size,), replace=False)
        loss, grads = jax.value_and_grad(loss_fn)(theta, x[batch], y[batch])
        updates, state = tx.update(grads, state, theta)
        return (optax.apply_updates(theta, updates), state), loss

    def run(theta, step_keys):
        (theta, _), losses = jax.lax.scan(step, (theta, tx.init(theta)), step_keys)
        return theta, losses

    step_keys = jax.random.split(key, steps)
    compiled = jax.jit(run).lower(params, step_keys).compile()
    seconds = []
    for _ in range(timing_repeats):
        start = time.perf_counter()
        trained, losses = jax.block_until_ready(compiled(params, step_keys))
        seconds.append(time.perf_counter() - start)
    return Trained(trained, np.asarray(losses), min(seconds) / steps)


class Setting(NamedTuple):
    """A method's training problem: start, loss, optimiser, and what is done to the result."""

    start: Params
    loss_fn: Callable[[Params, jax.Array, jax.Array], jax.Array]
    tx: Any
    finish: Callable[[Params], Params]


def setting(method: str, dense: Params, sparsity: float, *, learning_rate: float, steps: int,
            strength: float = 0.0) -> Setting:
    """The training problem of ``method`` (one of METHODS) at ``sparsity``, from the dense model.

    ``strength`` is lam for "l1" and mu for "penalty" (> 0 there, ignored otherwise); ``steps`` sets
    gamma = 1 - GRADUAL_SHRINK^(1/steps) for "nullspace_gradual".
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sparsity = check_sparsity(sparsity)
    if method in ("l1", "penalty") and not strength > 0:
        raise ValueError(f"{method} needs strength > 0, got {strength}")
    adam = optax.adam(learning_rate)
    mask = magnitude_mask(dense, sparsity)
    if method == "dense":
        return Setting(dense, cross_entropy, adam, lambda theta: theta)
    if method in ("nullspace", "nullspace_gradual"):
        gamma = 1.0 if method == "nullspace" else 1.0 - GRADUAL_SHRINK ** (1.0 / steps)
        tx = nullspace_optimizer(adam, mask, gamma=gamma)
        return Setting(dense, cross_entropy, tx, lambda theta: prune(theta, mask))
    if method == "prune":
        return Setting(prune(dense, mask), cross_entropy, hard_mask(adam, mask), lambda theta: theta)
    if method == "l1":
        loss = lambda theta, x, y: cross_entropy(theta, x, y) + strength * l1_norm(theta)  # noqa: E731
        return Setting(dense, loss, adam, lambda theta: prune(theta, magnitude_mask(theta, sparsity)))
    penalized = baselines.quadratic_penalty(cross_entropy, constraints.sparsity(mask), strength)
    return Setting(dense, penalized, adam, lambda theta: prune(theta, mask))


def evaluate(
    method: str,
    dense: Params,
    sparsity: float,
    split: data.Split,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    key: jax.Array,
    strength: float = 0.0,
    timing_repeats: int = 1,
) -> dict:
    """Train ``method`` from ``dense`` and report its test error and surviving fraction after ``finish``.

    Trained on ``split``'s training part, tested on its test part. Also reported: the test error and the largest
    masked |w| before ``finish`` (for nullspace: the constraint violation it leaves; the error must not
    change when it is zeroed), the final training loss and the time per step.
    """
    problem = setting(method, dense, sparsity, learning_rate=learning_rate, steps=steps, strength=strength)
    trained = train(problem.loss_fn, problem.tx, problem.start, split.x_train, split.y_train,
                    steps=steps, batch_size=batch_size, key=key, timing_repeats=timing_repeats)
    final = problem.finish(trained.params)
    mask = magnitude_mask(dense, sparsity)
    return dict(
        test_error=error_rate(final, split.x_test, split.y_test),
        surviving=surviving_fraction(final),
        error_before_finish=error_rate(trained.params, split.x_test, split.y_test),
        violation_before_finish=mask_violation(trained.params, mask) if method in MASKED else float("nan"),
        final_loss=float(np.mean(trained.losses[-10:])),
        ms_per_step=1e3 * trained.seconds_per_step,
    )


# ------------------------------------------------------------------------------- the digits comparison


TABLE = "sparsity"  # lsqlab/applications/results/sparsity.{csv,md}, recorded by benchmarks/app_sparsity.py --record
TABLE_BY = ["sparsity", "method"]
TABLE_METRICS = ["test_error", "surviving", "error_before_finish", "violation_before_finish", "ms_per_step",
                 "overhead"]
STRENGTH_GRIDS = {"l1": (1e-4, 1e-3, 1e-2), "penalty": (1.0, 10.0, 100.0)}


class Budget(NamedTuple):
    """Sizes and steps of the digits comparison: an MLP 64-300-100-10 (the LeNet-300-100 shape on
    8x8 inputs), Adam with minibatches; ``steps`` for every method after ``pretrain_steps`` dense ones."""

    sizes: tuple[int, ...] = (64, 300, 100, 10)
    pretrain_steps: int = 2000
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    timing_repeats: int = 3  # of each compared run (min time); 1 for pretraining and selection


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
    return train(cross_entropy, optax.adam(budget.learning_rate), params, split.x_train, split.y_train,
                 steps=budget.pretrain_steps, batch_size=budget.batch_size, key=train_key).params


def select_strengths(levels: tuple[float, ...], grids: dict, budget: Budget, seed: int) -> dict:
    """``{(method, level): strength}``: per level, the candidate of ``grids[method]`` (lam for "l1", mu for
    "penalty") with the lowest validation error after pruning. Validation: a fifth of the training part
    of split ``seed`` (the test part is not used), from one dense model pretrained on the rest. A single
    candidate is taken as is."""
    if any(not grid for grid in grids.values()):
        raise ValueError(f"every method needs a candidate strength, got {grids}")
    chosen = {(method, level): grid[0] for method, grid in grids.items() for level in levels if len(grid) == 1}
    if len(chosen) == len(grids) * len(levels):
        return chosen
    split = digits_split(seed)
    inner = data.split(split.x_train, split.y_train, test_fraction=0.2, seed=seed)
    key = jax.random.PRNGKey(seed)
    dense = pretrain(inner, budget, key)
    options = dict(steps=budget.steps, batch_size=budget.batch_size, learning_rate=budget.learning_rate,
                   key=jax.random.fold_in(key, 1))
    for method, grid in grids.items():
        for level in levels:
            if (method, level) not in chosen:
                errors = [evaluate(method, dense, level, inner, strength=strength, **options)["test_error"]
                          for strength in grid]
                chosen[(method, level)] = grid[int(np.argmin(errors))]
    return chosen


def compare(levels: tuple[float, ...], seeds: tuple[int, ...], budget: Budget, strengths: dict) -> list[dict]:
    """Every method at every sparsity level and seed on the digits; one row per run.

    Per seed: one split, one dense model (pretrained), then ``budget.steps`` steps of each method from it
    on the same minibatches. ``strengths[(method, level)]`` is lam or mu for "l1" and "penalty".
    ``overhead`` is the method's time per step over the dense model's (plain Adam) in the same seed.
    """
    for level in levels:
        check_sparsity(level)
    rows = []
    for seed in seeds:
        split = digits_split(seed)
        key = jax.random.PRNGKey(seed)
        dense = pretrain(split, budget, key)
        options = dict(steps=budget.steps, batch_size=budget.batch_size, learning_rate=budget.learning_rate,
                       key=jax.random.fold_in(key, 1), timing_repeats=budget.timing_repeats)
        reference = evaluate("dense", dense, 0.0, split, **options)
        rows.append(dict(method="dense", sparsity=0.0, seed=seed, strength=0.0, **reference))
        for level in levels:
            for method in METHODS[1:]:
                strength = strengths.get((method, level), 0.0)
                result = evaluate(method, dense, level, split, strength=strength, **options)
                rows.append(dict(method=method, sparsity=level, seed=seed, strength=strength, **result))
        for row in rows:
            if row["seed"] == seed:
                row["overhead"] = row["ms_per_step"] / reference["ms_per_step"]
    return rows
