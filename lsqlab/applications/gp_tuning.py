"""Hyperparameters tuned for prediction: the held-out loss over folds and Adam on it, through the solve.

For folds k = 1..K with training rows T_k and validation rows V_k,

    L(theta, sigma) = (1/K) sum_k (1/|V_k|) sum_{i in V_k} -log N(y_i; mu_k(x_i), v_k(x_i)),
    mu_k = Phi LstSq(Phi_{T_k}, y_{T_k}, sigma),   v_k the predictive variance of the fold-k model
    (:mod:`.gp_posterior`), over log hyperparameters; the gradient passes through the random features
    (:mod:`.random_features`), lsqlab.lstsq's adjoint rules (mu) and a dense Cholesky factorisation (v).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab.applications.gp_posterior import (SOLVE, as_inputs, check_shapes, masked_quadratic,
                                              negative_log_density, posterior_weights)
from lsqlab.applications.random_features import Hyper, features
from lsqlab.solver import LstSqInfo, SolverOptions


def forward_folds(x: np.ndarray, origins: Sequence[float], horizon: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Forward chaining on a time axis x (n,): per origin t, train on x < t and validate on t <= x < t + horizon."""
    folds = [(np.flatnonzero(x < t), np.flatnonzero((x >= t) & (x < t + horizon))) for t in origins]
    if any(len(train) == 0 or len(val) == 0 for train, val in folds):
        raise ValueError(f"every origin needs data before it and within its horizon; origins {list(origins)}")
    return folds


def fold_masks(folds: Sequence[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[jax.Array, jax.Array]:
    """(train, validation) 0/1 masks (K, n) from K pairs of index arrays."""
    train, val = np.zeros((len(folds), n)), np.zeros((len(folds), n))
    for k, (train_idx, val_idx) in enumerate(folds):
        if np.intersect1d(train_idx, val_idx).size:
            raise ValueError(f"fold {k}: training and validation indices overlap")
        train[k, train_idx], val[k, val_idx] = 1.0, 1.0
    return jnp.asarray(train), jnp.asarray(val)


def heldout_loss(hyper: Hyper, draws: dict[str, jax.Array], x: jax.Array, y: jax.Array, train_masks: jax.Array,
                 val_masks: jax.Array, *, kind: str,
                 options: SolverOptions = SOLVE) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """L above: the mean over folds of the validation NLPD of the model fitted on each fold's training part.

    A fold's training problem is Phi and y with the other rows zeroed (zero rows change neither w nor
    the variance), so all folds share one shape and one compiled solve, run fold after fold (``lax.map``).
    ``vmap`` over the masks also works for the solves (damp is taken by value), but the vmapped ARD fit
    of benchmarks/app_gp.py deadlocked inside XLA on a 2-core CPU (jax 0.10.2); fold after fold it did not.
    Returns the loss and, as diagnostics from the folds' LstSqInfo, the most LSMR iterations over the
    folds and whether every fold's solve converged.
    """
    phi = features(kind, hyper, draws, x)
    noise = jnp.exp(hyper["noise"])
    gram = phi @ phi.T

    def one_fold(train: jax.Array, val: jax.Array) -> tuple[jax.Array, LstSqInfo]:
        weights, info = posterior_weights(phi * train[:, None], y * train, noise, options)
        variance = noise**2 * (1.0 + masked_quadratic(gram, train, noise))
        pointwise = negative_log_density(y, phi @ weights, variance)
        return jnp.sum(pointwise * val) / jnp.sum(val), info

    losses, info = jax.lax.map(lambda masks: one_fold(*masks), (train_masks, val_masks))
    return jnp.mean(losses), (jnp.max(info.iterations), jnp.all(info.converged))


class Fit(NamedTuple):
    """Result of :func:`fit`: the tuned (log) hyperparameters and the optimisation record."""

    hyper: Hyper  # the iterate with the lowest held-out loss
    losses: np.ndarray  # held-out loss at each step (before the step's update)
    seconds: float  # wall time of all the optimisation steps, compilation excluded: the whole fit
    compile_seconds: float
    max_iterations: int  # most LSMR iterations of any forward solve during training
    converged: bool  # every forward solve of every step met its tolerances


def fit(kind: str, hyper: Hyper, draws: dict[str, jax.Array], x: np.ndarray, y: np.ndarray,
        folds: Sequence[tuple[np.ndarray, np.ndarray]], *, steps: int, learning_rate: float = 0.01,
        step_scales: dict[str, float] | None = None, options: SolverOptions = SOLVE) -> Fit:
    """Tune log hyperparameters by full-batch Adam on :func:`heldout_loss` over ``folds``; gradients through
    lsqlab.lstsq. ``step_scales`` multiplies Adam's step per hyperparameter (default 1): a period seen over
    S cycles shifts the phase at the ends of the record S times faster than a lengthscale changes the kernel.

    Its own loop, not :func:`lsqlab.applications.training.train`: the solves sit inside the loss, so their
    diagnostics come out of it (its LstSqInfo, as auxiliary output), the iterate kept is the one with the
    lowest held-out loss rather than the last, and the time reported is the whole fit's wall time, to set
    beside scikit-learn's fit, not a time per step.
    """
    x, y = as_inputs(x), jnp.asarray(y, jnp.float64)
    check_shapes(x, y)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    train_masks, val_masks = fold_masks(folds, len(y))
    unknown = set(step_scales or {}) - set(hyper)
    if unknown:
        raise ValueError(f"step_scales names unknown hyperparameters {sorted(unknown)}")
    scales = {name: jnp.full_like(value, (step_scales or {}).get(name, 1.0)) for name, value in hyper.items()}
    state = optax.adam(learning_rate).init(hyper)
    args = (scales, draws, x, y, train_masks, val_masks)
    started = time.perf_counter()
    step = _adam_step.lower(hyper, state, *args, kind=kind, options=options, learning_rate=learning_rate).compile()
    compile_seconds = time.perf_counter() - started
    losses, best, best_loss, max_iterations, converged = [], hyper, np.inf, 0, True
    started = time.perf_counter()
    for _ in range(steps):
        new_hyper, state, value, (iterations, solved) = step(hyper, state, *args)
        value = float(value)
        losses.append(value)
        max_iterations, converged = max(max_iterations, int(iterations)), converged and bool(solved)
        if value < best_loss:
            best, best_loss = hyper, value
        hyper = new_hyper
    return Fit(best, np.asarray(losses), time.perf_counter() - started, compile_seconds, max_iterations, converged)


@partial(jax.jit, static_argnames=("kind", "options", "learning_rate"))
def _adam_step(hyper, state, scales, draws, x, y, train_masks, val_masks, *, kind, options, learning_rate):
    (value, diagnostics), grads = jax.value_and_grad(heldout_loss, has_aux=True)(
        hyper, draws, x, y, train_masks, val_masks, kind=kind, options=options)
    updates, state = optax.adam(learning_rate).update(grads, state, hyper)
    updates = jax.tree.map(jnp.multiply, updates, scales)
    return optax.apply_updates(hyper, updates), state, value, diagnostics


def central_difference(loss: Callable[[Hyper], jax.Array], hyper: Hyper, name: str, step: float = 1e-5) -> float:
    """(L(theta + h e) - L(theta - h e)) / 2h along one log hyperparameter (its first entry if a vector)."""
    def shifted(sign: float) -> float:
        value = hyper[name]
        moved = value + sign * step if jnp.ndim(value) == 0 else value.at[0].add(sign * step)
        return float(loss({**hyper, name: moved}))

    return (shifted(1.0) - shifted(-1.0)) / (2 * step)
