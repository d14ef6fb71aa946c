"""Gaussian-process hyperparameters tuned for prediction, by differentiating through the solve.

Model (Bayesian linear regression on random features, a GP whose kernel is k(x, x') ~ phi(x)^T phi(x')):

    y = Phi(theta) w + eps,   w ~ N(0, I),   eps ~ N(0, sigma^2 I)
    w_mean = LstSq(Phi, y, damp = sigma) = (Phi^T Phi + sigma^2 I)^{-1} Phi^T y        (lsqlab.lstsq)
    mean(x*) = phi*^T w_mean,   var(x*) = sigma^2 (1 + phi*^T (Phi^T Phi + sigma^2 I)^{-1} phi*)

The kernel's amplitudes live inside the features, so the damping is the noise standard deviation sigma
(in general lambda^2 = noise variance / prior variance). Hyperparameters are stored as logarithms in a
dict; ``"noise"`` is log sigma. They are tuned by Adam on a held-out predictive loss (NLPD or squared
error) averaged over folds; the gradient reaches theta and sigma through the adjoint rules of
``lsqlab.lstsq`` (mean weights) and through a dense Cholesky factorisation (variance).

Features from a rule (z_i, c_i) for E f(z), z ~ N(0, I): fixed base points, reparametrised by theta.
  RBF a^2 exp(-|tau|^2 / 2 l^2):  phi(x) = a [sqrt(c_i) cos(x w_i), sqrt(c_i) sin(x w_i)],  w_i = z_i / l
      (so phi(x)^T phi(x') = a^2 sum_i c_i cos(w_i^T (x - x')) ~ a^2 E cos(z^T (x - x') / l) = the kernel);
  periodic exp(-2 sin^2(pi tau / p) / l^2) = sum_j q_j cos(2 pi j tau / p), q_0 = c_0, q_j = 2 c_j,
      c_j = e^{-1/l^2} I_j(1/l^2), computed as the DFT of the kernel over one period (trapezoid rule,
      exact up to aliasing) and truncated after J harmonics; the product a^2 RBF(l_d) * periodic has
      frequencies v_ij = z_i / l_d + 2 pi j / p and weights a^2 c_i q_j, because
      E cos((w + 2 pi j / p) tau) = cos(2 pi j tau / p) E cos(w tau) for symmetric w;
  rational quadratic a^2 (1 + tau^2 / (2 alpha l^2))^{-alpha} = E_g exp(-g tau^2 / 2),
      g ~ Gamma(shape alpha, rate alpha l^2): frequencies w_i = z_i sqrt(g_i), g_i = G^{-1}(u_i; alpha) /
      (alpha l^2) with G^{-1} the Gamma(alpha, 1) quantile (differentiable in alpha, implicit function).
Rules: the smooth, long CO2 terms (trend, seasonal decay) use Gauss-Hermite quadrature (deterministic,
exact for polynomials of degree < 2D; the data span is under one lengthscale); the rational quadratic
and the short term use stratified Monte Carlo (one draw per equal-probability stratum, c_i = 1/D; the
RQ's z and u strata paired at random, a Latin hypercube); the ARD kernel plain Monte Carlo, z ~ N(0, I_d).

Kernels: ``"co2"`` is the GPML Mauna Loa kernel (Rasmussen & Williams 2006, section 5.4.3): a long RBF
trend, a decaying periodic seasonal term, a rational-quadratic medium-term term, a short RBF term and
white noise; ``"ard"`` is an RBF with one lengthscale per input dimension.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import gammainc, gammaln

import lsqlab
from lsqlab import data
from lsqlab.operators import is_concrete

Hyper = dict[str, jax.Array]  # log hyperparameters
KERNELS = ("co2", "ard")
LOSSES = ("nlpd", "mse")

# Rasmussen & Williams (2006), section 5.4.3: amplitudes and noise in ppm, lengthscales and period in years.
GPML_TEXTBOOK = {
    "trend_amplitude": 66.0, "trend_lengthscale": 67.0,
    "seasonal_amplitude": 2.4, "seasonal_decay": 90.0, "seasonal_smoothness": 1.3, "period": 1.0,
    "medium_amplitude": 0.66, "medium_lengthscale": 1.2, "medium_alpha": 0.78,
    "short_amplitude": 0.18, "short_lengthscale": 0.134, "noise": 0.19,
}
CO2_FREQUENCIES = {"trend": 32, "seasonal": 16, "medium": 1024, "short": 256}  # quadrature nodes or draws
HARMONICS = 7  # periodic kernel truncated after 7 harmonics: tail weight < 1e-5 for smoothness >= 1
DFT_POINTS = 64


# ---------------------------------------------------------------- hyperparameters and base draws


def log_hyper(values: dict[str, float]) -> Hyper:
    """Positive hyperparameters -> their logarithms (the optimised coordinates)."""
    if min(values.values()) <= 0:
        raise ValueError(f"hyperparameters must be > 0, got {values}")
    return {name: jnp.log(jnp.asarray(value, jnp.float64)) for name, value in values.items()}


def positive(hyper: Hyper) -> dict[str, jax.Array]:
    """Log hyperparameters -> their values."""
    return {name: jnp.exp(value) for name, value in hyper.items()}


def co2_textbook() -> Hyper:
    """The GPML book's CO2 hyperparameters (log)."""
    return log_hyper(GPML_TEXTBOOK)


def ard_initial(dim: int, amplitude: float = 1.0, noise: float = 0.5) -> Hyper:
    """ARD-RBF start for standardised data: lengthscales sqrt(dim), as for an isotropic kernel on |x|^2 ~ dim."""
    return {**log_hyper({"amplitude": amplitude, "noise": noise}),
            "lengthscales": jnp.full(dim, 0.5 * np.log(dim), jnp.float64)}


def hermite_rule(count: int) -> tuple[jax.Array, jax.Array]:
    """Gauss-Hermite rule for z ~ N(0, 1) by Golub-Welsch: the points are the eigenvalues of the Jacobi
    matrix of the probabilists' Hermite polynomials (zero diagonal, off-diagonal sqrt(k)), the weights
    the squared first components of its eigenvectors (stable for hundreds of points)."""
    from scipy.linalg import eigh_tridiagonal

    points, vectors = eigh_tridiagonal(np.zeros(count), np.sqrt(np.arange(1.0, count)))
    return jnp.asarray(points), jnp.asarray(vectors[0] ** 2)


def stratified_uniform(rng: np.random.Generator, count: int) -> np.ndarray:
    """One uniform draw in each stratum [i/D, (i+1)/D), in random order."""
    return (rng.permutation(count) + rng.uniform(1e-9, 1 - 1e-9, count)) / count


def co2_draws(seed: int, counts: dict[str, int] | None = None) -> dict[str, jax.Array]:
    """Base rules of the CO2 features (``counts`` overrides CO2_FREQUENCIES): Gauss-Hermite for the trend and
    the seasonal decay; stratified normal draws z and stratified uniforms u (RQ mixture) for the rest."""
    from scipy.special import ndtri

    counts = {**CO2_FREQUENCIES, **(counts or {})}
    rng = np.random.default_rng(seed)
    draws = {}
    for name in ("trend", "seasonal"):
        draws[f"{name}_points"], draws[f"{name}_weights"] = hermite_rule(counts[name])
    for name in ("medium", "short"):
        draws[f"{name}_points"] = jnp.asarray(ndtri(stratified_uniform(rng, counts[name])))
        draws[f"{name}_weights"] = jnp.full(counts[name], 1.0 / counts[name])
    draws["medium_u"] = jnp.asarray(stratified_uniform(rng, counts["medium"]))
    return draws


def ard_draws(seed: int, dim: int, frequencies: int) -> dict[str, jax.Array]:
    """Plain Monte Carlo base frequencies z ~ N(0, I_dim) of the ARD-RBF features, weights 1/D."""
    return {"points": jnp.asarray(np.random.default_rng(seed).standard_normal((frequencies, dim))),
            "weights": jnp.full(frequencies, 1.0 / frequencies)}


# ---------------------------------------------------------------- random features


def fourier_features(x: jax.Array, frequencies: jax.Array, weights: jax.Array) -> jax.Array:
    """[sqrt(weights) cos(x w^T), sqrt(weights) sin(x w^T)]: (n, d), (D, d), (D,) -> (n, 2D).

    phi(x)^T phi(x') = sum_i weights_i cos(w_i^T (x - x')).
    """
    angles = x @ frequencies.T
    scale = jnp.sqrt(weights)
    return jnp.concatenate([scale * jnp.cos(angles), scale * jnp.sin(angles)], axis=1)


def rbf_features(x: jax.Array, points: jax.Array, weights: jax.Array, amplitude: jax.Array,
                 lengthscale: jax.Array) -> jax.Array:
    """Features of a^2 exp(-sum_k tau_k^2 / 2 l_k^2) from a rule (points (D, d), weights (D,)) for N(0, I):
    frequencies points / l (l scalar or per dimension), weights a^2 c_i."""
    return fourier_features(x, points / lengthscale, amplitude**2 * weights)


def periodic_weights(smoothness: jax.Array, harmonics: int = HARMONICS, points: int = DFT_POINTS) -> jax.Array:
    """q_0..q_J of exp(-2 sin^2(pi tau / p) / l^2) = sum_j q_j cos(2 pi j tau / p) (independent of p).

    c_j = (1/N) sum_n k(n p / N) cos(2 pi j n / N) (the DFT, = e^{-1/l^2} I_j(1/l^2) up to aliasing);
    q_0 = c_0 and q_j = 2 c_j for j >= 1.
    """
    grid = jnp.arange(points) / points
    kernel = jnp.exp(-2.0 * jnp.sin(jnp.pi * grid) ** 2 / smoothness**2)
    j = jnp.arange(harmonics + 1)
    c = jnp.mean(kernel[None, :] * jnp.cos(2 * jnp.pi * j[:, None] * grid[None, :]), axis=1)
    return jnp.where(j == 0, c, 2.0 * c)


def decaying_periodic_features(x: jax.Array, points: jax.Array, weights: jax.Array, amplitude: jax.Array,
                               decay: jax.Array, smoothness: jax.Array, period: jax.Array,
                               harmonics: int = HARMONICS) -> jax.Array:
    """Features of a^2 RBF(decay) * periodic(smoothness, period) on 1-D inputs (n, 1), from a rule (z_i, c_i).

    Frequencies v_ij = z_i / decay + 2 pi j / p, weights a^2 c_i q_j, for j = 0..J.
    """
    q = periodic_weights(smoothness, harmonics)
    j = jnp.arange(harmonics + 1)
    frequencies = (points[:, None] / decay + 2 * jnp.pi * j[None, :] / period).reshape(-1, 1)
    return fourier_features(x, frequencies, (amplitude**2 * weights[:, None] * q[None, :]).reshape(-1))


@jax.custom_jvp
def gamma_quantile(u: jax.Array, shape: jax.Array) -> jax.Array:
    """G^{-1}(u; shape): the u-quantile of Gamma(shape, 1), by bisection on log x (120 halvings).

    Derivatives by the implicit function theorem on P(shape, x) = u: dx = (du - dP/dshape dshape) / p(x).
    """
    low = jnp.full(jnp.shape(u), -250.0)
    high = jnp.full(jnp.shape(u), jnp.log(shape + 40.0 * jnp.sqrt(shape) + 100.0))

    def halve(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        below = gammainc(shape, jnp.exp(middle)) < u
        return jnp.where(below, middle, low), jnp.where(below, high, middle)

    low, high = jax.lax.fori_loop(0, 120, halve, (low, high))
    return jnp.exp(0.5 * (low + high))


@gamma_quantile.defjvp
def _gamma_quantile_jvp(primals, tangents):
    u, shape = primals
    du, dshape = tangents
    x = gamma_quantile(u, shape)
    density = jnp.exp((shape - 1.0) * jnp.log(x) - x - gammaln(shape))
    dcdf_dshape = jax.vmap(jax.grad(gammainc, argnums=0), in_axes=(None, 0))(shape, jnp.ravel(x)).reshape(x.shape)
    return x, (du - dcdf_dshape * dshape) / density


def rational_quadratic_features(x: jax.Array, points: jax.Array, weights: jax.Array, u: jax.Array,
                                amplitude: jax.Array, lengthscale: jax.Array, alpha: jax.Array) -> jax.Array:
    """Features of a^2 (1 + tau^2 / (2 alpha l^2))^{-alpha} from draws (z_i, u_i) with weights c_i:
    frequencies z_i sqrt(G^{-1}(u_i; alpha) / alpha) / l, weights a^2 c_i."""
    precision = gamma_quantile(u, alpha) / alpha
    return fourier_features(x, (points * jnp.sqrt(precision) / lengthscale)[:, None], amplitude**2 * weights)


def co2_features(hyper: Hyper, draws: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Random features of the GPML CO2 kernel (its white noise is the damping, not a feature); x (n, 1)."""
    h = positive(hyper)
    return jnp.concatenate([
        rbf_features(x, draws["trend_points"][:, None], draws["trend_weights"], h["trend_amplitude"],
                     h["trend_lengthscale"]),
        decaying_periodic_features(x, draws["seasonal_points"], draws["seasonal_weights"], h["seasonal_amplitude"],
                                   h["seasonal_decay"], h["seasonal_smoothness"], h["period"]),
        rational_quadratic_features(x, draws["medium_points"], draws["medium_weights"], draws["medium_u"],
                                    h["medium_amplitude"], h["medium_lengthscale"], h["medium_alpha"]),
        rbf_features(x, draws["short_points"][:, None], draws["short_weights"], h["short_amplitude"],
                     h["short_lengthscale"]),
    ], axis=1)


def ard_features(hyper: Hyper, draws: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Random features of a^2 exp(-sum_k tau_k^2 / 2 l_k^2); x (n, d)."""
    h = positive(hyper)
    return rbf_features(x, draws["points"], draws["weights"], h["amplitude"], h["lengthscales"])


def features(kind: str, hyper: Hyper, draws: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Phi(theta) for kernel ``kind`` ("co2" or "ard") at inputs x (n, d)."""
    if kind == "co2":
        return co2_features(hyper, draws, x)
    if kind == "ard":
        return ard_features(hyper, draws, x)
    raise ValueError(f"unknown kernel {kind!r}; choose one of {KERNELS}")


def exact_kernel(kind: str, hyper: Hyper, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """The kernel the features approximate (without the white noise), in NumPy float64: the reference."""
    h = {name: np.asarray(value) for name, value in positive(hyper).items()}
    if kind == "ard":
        scaled = (x1[:, None, :] - x2[None, :, :]) / h["lengthscales"]
        return h["amplitude"] ** 2 * np.exp(-0.5 * np.sum(scaled**2, axis=-1))
    if kind != "co2":
        raise ValueError(f"unknown kernel {kind!r}; choose one of {KERNELS}")
    tau = x1[:, 0][:, None] - x2[:, 0][None, :]

    def rbf(amplitude, lengthscale):
        return amplitude**2 * np.exp(-0.5 * tau**2 / lengthscale**2)

    periodic = np.exp(-2 * np.sin(np.pi * tau / h["period"]) ** 2 / h["seasonal_smoothness"] ** 2)
    rq = h["medium_amplitude"] ** 2 * (1 + tau**2 / (2 * h["medium_alpha"] * h["medium_lengthscale"] ** 2)) ** (
        -h["medium_alpha"])
    return (rbf(h["trend_amplitude"], h["trend_lengthscale"]) + rbf(h["seasonal_amplitude"], h["seasonal_decay"])
            * periodic + rq + rbf(h["short_amplitude"], h["short_lengthscale"]))


# ---------------------------------------------------------------- predictive distribution


class SolveOptions(NamedTuple):
    """LSMR tolerances of the mean-weight solve (forward and backward); maxiter None: 10 min(n, F)
    (rounding makes LSMR need more than the min(n, F) steps of exact arithmetic)."""

    atol: float = 1e-10
    btol: float = 1e-10
    maxiter: int | None = None


def posterior_weights(phi: jax.Array, y: jax.Array, noise: jax.Array | float,
                      options: SolveOptions = SolveOptions()) -> tuple[jax.Array, Any]:
    """w = LstSq(Phi, y, damp = sigma) = (Phi^T Phi + sigma^2 I)^{-1} Phi^T y, by lsqlab.lstsq (differentiable)."""
    _check_shapes(phi, y)
    if is_concrete(noise) and not float(noise) > 0:
        raise ValueError(f"the noise standard deviation (the damping) must be > 0, got {float(noise)}")
    maxiter = 10 * min(phi.shape) if options.maxiter is None else options.maxiter
    return lsqlab.lstsq(phi, y, damp=noise, atol=options.atol, btol=options.btol, conlim=1e12, maxiter=maxiter)


def posterior_quadratic(phi: jax.Array, phi_star: jax.Array, noise: jax.Array) -> jax.Array:
    """phi*^T (Phi^T Phi + sigma^2 I)^{-1} phi* per row of phi*, by a dense Cholesky factorisation.

    Primal (F x F) when F <= n; otherwise the dual by Woodbury,
    (||phi*||^2 - phi*^T Phi^T (Phi Phi^T + sigma^2 I)^{-1} Phi phi*) / sigma^2 (n x n).
    """
    n, count = phi.shape
    if count <= n:
        chol = jnp.linalg.cholesky(phi.T @ phi + noise**2 * jnp.eye(count))
        half = jax.scipy.linalg.solve_triangular(chol, phi_star.T, lower=True)
        return jnp.sum(half**2, axis=0)
    chol = jnp.linalg.cholesky(phi @ phi.T + noise**2 * jnp.eye(n))
    half = jax.scipy.linalg.solve_triangular(chol, phi @ phi_star.T, lower=True)
    return (jnp.sum(phi_star**2, axis=1) - jnp.sum(half**2, axis=0)) / noise**2


def masked_quadratic(gram: jax.Array, train: jax.Array, noise: jax.Array) -> jax.Array:
    """phi_i^T (Phi_T^T Phi_T + sigma^2 I)^{-1} phi_i at every point i, Phi_T the rows with train = 1.

    From the Gram matrix K = Phi Phi^T of all points, shared by the folds (dual form, Woodbury):
    (K_ii - K_iT (K_TT + sigma^2 I)^{-1} K_Ti) / sigma^2; masked-out rows enter as sigma^2 I and drop out.
    """
    cross = gram * train[:, None]
    chol = jnp.linalg.cholesky(cross * train[None, :] + noise**2 * jnp.eye(len(train)))
    half = jax.scipy.linalg.solve_triangular(chol, cross, lower=True)
    return (jnp.diag(gram) - jnp.sum(half**2, axis=0)) / noise**2


def predictive(phi: jax.Array, y: jax.Array, phi_star: jax.Array, noise: jax.Array,
               options: SolveOptions = SolveOptions()) -> tuple[jax.Array, jax.Array, Any]:
    """Predictive mean phi*^T w, variance sigma^2 (1 + phi*^T (Phi^T Phi + sigma^2 I)^{-1} phi*), solve info."""
    weights, info = posterior_weights(phi, y, noise, options)
    return phi_star @ weights, noise**2 * (1.0 + posterior_quadratic(phi, phi_star, noise)), info


def negative_log_density(y: jax.Array, mean: jax.Array, variance: jax.Array) -> jax.Array:
    """-log N(y; m, v) = log(2 pi v) / 2 + (y - m)^2 / (2 v), pointwise."""
    return 0.5 * jnp.log(2 * jnp.pi * variance) + 0.5 * (y - mean) ** 2 / variance


def nlpd(y: jax.Array, mean: jax.Array, variance: jax.Array) -> jax.Array:
    """Mean negative log predictive density of Gaussians."""
    return jnp.mean(negative_log_density(y, mean, variance))


def rmse(y: jax.Array, mean: jax.Array) -> jax.Array:
    """Root mean squared error."""
    return jnp.sqrt(jnp.mean((y - mean) ** 2))


# ---------------------------------------------------------------- folds and the held-out objective


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
                 val_masks: jax.Array, *, kind: str, loss: str = "nlpd",
                 options: SolveOptions = SolveOptions()) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Mean over folds of the validation NLPD (or squared error) of the model fitted on each fold's training part.

    A fold's training problem is Phi and y with the other rows zeroed (zero rows change neither w nor
    the variance), so all folds share one shape and one compiled solve, run fold after fold (``lax.map``).
    ``vmap`` over the masks also works for the solves (damp is taken by value), and passed this module's
    hypergradient check, but in jax 0.10.2 on a 2-core CPU the vmapped ARD fit of benchmarks/app_gp.py
    deadlocked inside XLA (every thread waiting, no CPU used) in 3 runs of 3; fold after fold it did not.
    Returns the loss and, as diagnostics, the most LSMR iterations over the folds and whether every
    fold's solve converged.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    phi = features(kind, hyper, draws, x)
    noise = jnp.exp(hyper["noise"])
    gram = phi @ phi.T if loss == "nlpd" else None

    def one_fold(train: jax.Array, val: jax.Array) -> tuple[jax.Array, Any]:
        weights, info = posterior_weights(phi * train[:, None], y * train, noise, options)
        mean = phi @ weights
        if loss == "mse":
            pointwise = (y - mean) ** 2
        else:
            pointwise = negative_log_density(y, mean, noise**2 * (1.0 + masked_quadratic(gram, train, noise)))
        return jnp.sum(pointwise * val) / jnp.sum(val), info

    losses, info = jax.lax.map(lambda masks: one_fold(*masks), (train_masks, val_masks))
    return jnp.mean(losses), (jnp.max(info.iterations), jnp.all(info.converged))


# ---------------------------------------------------------------- training


class Fit(NamedTuple):
    """Result of :func:`fit`: the tuned (log) hyperparameters and the optimisation record."""

    hyper: Hyper  # the iterate with the lowest held-out loss
    losses: np.ndarray  # held-out loss at each step (before the step's update)
    seconds: float  # wall time of the optimisation steps, compilation excluded
    compile_seconds: float
    max_iterations: int  # most LSMR iterations of any forward solve during training
    converged: bool  # every forward solve of every step met its tolerances


def fit(kind: str, hyper: Hyper, draws: dict[str, jax.Array], x: np.ndarray, y: np.ndarray,
        folds: Sequence[tuple[np.ndarray, np.ndarray]], *, steps: int, learning_rate: float = 0.01,
        step_scales: dict[str, float] | None = None, loss: str = "nlpd",
        options: SolveOptions = SolveOptions()) -> Fit:
    """Tune log hyperparameters by Adam on :func:`heldout_loss` over ``folds``; gradients through lsqlab.lstsq.

    ``step_scales`` multiplies Adam's step per hyperparameter (default 1): a period seen over S cycles
    shifts the phase at the ends of the record S times faster than a lengthscale changes the kernel.
    """
    x, y = _as_inputs(x), jnp.asarray(y, jnp.float64)
    _check_shapes(x, y)
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
    step = _adam_step.lower(hyper, state, *args, kind=kind, loss=loss, options=options,
                            learning_rate=learning_rate).compile()
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


@partial(jax.jit, static_argnames=("kind", "loss", "options", "learning_rate"))
def _adam_step(hyper, state, scales, draws, x, y, train_masks, val_masks, *, kind, loss, options, learning_rate):
    (value, diagnostics), grads = jax.value_and_grad(heldout_loss, has_aux=True)(
        hyper, draws, x, y, train_masks, val_masks, kind=kind, loss=loss, options=options)
    updates, state = optax.adam(learning_rate).update(grads, state, hyper)
    updates = jax.tree.map(jnp.multiply, updates, scales)
    return optax.apply_updates(hyper, updates), state, value, diagnostics


def predict(kind: str, hyper: Hyper, draws: dict[str, jax.Array], x_train: np.ndarray, y_train: np.ndarray,
            x_test: np.ndarray, options: SolveOptions = SolveOptions()) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and variance at x_test of the model fitted on all of (x_train, y_train)."""
    x_train, x_test, y_train = _as_inputs(x_train), _as_inputs(x_test), jnp.asarray(y_train, jnp.float64)
    _check_shapes(x_train, y_train)
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"x_test has {x_test.shape[1]} input dimensions, x_train {x_train.shape[1]}")
    mean, variance, info = _predict(hyper, draws, x_train, y_train, x_test, kind=kind, options=options)
    if not bool(info.converged):
        raise RuntimeError(f"the mean-weight solve did not converge: {info.reason}")
    return np.asarray(mean), np.asarray(variance)


@partial(jax.jit, static_argnames=("kind", "options"))
def _predict(hyper, draws, x_train, y_train, x_test, *, kind, options):
    phi, phi_star = features(kind, hyper, draws, x_train), features(kind, hyper, draws, x_test)
    return predictive(phi, y_train, phi_star, jnp.exp(hyper["noise"]), options)


def _as_inputs(x: np.ndarray) -> jax.Array:
    x = jnp.asarray(x, jnp.float64)
    return x[:, None] if x.ndim == 1 else x


def _check_shapes(a: jax.Array, y: jax.Array) -> None:
    if jnp.ndim(y) != 1 or jnp.ndim(a) != 2 or jnp.shape(a)[0] != jnp.shape(y)[0]:
        raise ValueError(f"need a matrix with one row per target; got shapes {jnp.shape(a)} and {jnp.shape(y)}")


# ---------------------------------------------------------------- scikit-learn baselines


def gpml_kernel(scale: float = 1.0):
    """The GPML CO2 kernel for scikit-learn at the book's values, amplitudes and noise divided by ``scale``
    (the target's standard deviation when ``normalize_y=True``)."""
    from sklearn.gaussian_process.kernels import RBF, ExpSineSquared, RationalQuadratic, WhiteKernel

    t = GPML_TEXTBOOK
    return ((t["trend_amplitude"] / scale) ** 2 * RBF(t["trend_lengthscale"])
            + (t["seasonal_amplitude"] / scale) ** 2 * RBF(t["seasonal_decay"])
            * ExpSineSquared(t["seasonal_smoothness"], t["period"])
            + (t["medium_amplitude"] / scale) ** 2 * RationalQuadratic(t["medium_lengthscale"], t["medium_alpha"])
            + (t["short_amplitude"] / scale) ** 2 * RBF(t["short_lengthscale"])
            + WhiteKernel((t["noise"] / scale) ** 2))


def ard_kernel(dim: int, amplitude: float = 1.0, noise: float = 0.5):
    """a^2 ARD-RBF + white noise for scikit-learn, at the same start as :func:`ard_initial`."""
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel

    return amplitude**2 * RBF(np.full(dim, np.sqrt(dim))) + WhiteKernel(noise**2)


def sklearn_fit(x: np.ndarray, y: np.ndarray, kernel, *, optimize: bool, restarts: int = 0, seed: int = 0,
                normalize_y: bool = True) -> tuple[Any, float]:
    """An exact GP (scikit-learn): marginal-likelihood fit (L-BFGS-B, ``restarts`` random restarts) or fixed
    hyperparameters (optimize=False). Returns the fitted regressor and the wall time."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    x = np.asarray(x, np.float64).reshape(len(y), -1)
    model = GaussianProcessRegressor(kernel, optimizer="fmin_l_bfgs_b" if optimize else None,
                                     n_restarts_optimizer=restarts, normalize_y=normalize_y, random_state=seed)
    started = time.perf_counter()
    model.fit(x, y)
    return model, time.perf_counter() - started


def sklearn_predict(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and variance of y (the white noise included, as in the fitted kernel)."""
    mean, std = model.predict(np.asarray(x, np.float64).reshape(len(x), -1), return_std=True)
    return mean, std**2


# ---------------------------------------------------------------- checks and experiments


def central_difference(loss: Callable[[Hyper], jax.Array], hyper: Hyper, name: str, step: float = 1e-5) -> float:
    """(L(theta + h e) - L(theta - h e)) / 2h along one log hyperparameter (its first entry if a vector)."""
    def shifted(sign: float) -> float:
        value = hyper[name]
        moved = value + sign * step if jnp.ndim(value) == 0 else value.at[0].add(sign * step)
        return float(loss({**hyper, name: moved}))

    return (shifted(1.0) - shifted(-1.0)) / (2 * step)


@dataclass(frozen=True)
class Budget:
    """Sizes of one run of the experiments (:data:`FULL` for the table, :data:`SMOKE` for seconds)."""

    co2_steps: int = 80
    co2_start: float = 1958.0  # first training year; training ends at CO2_SPLIT_YEAR
    co2_frequency_scale: float = 1.0  # multiplies CO2_FREQUENCIES
    co2_restarts: int = 2  # random restarts of the marginal-likelihood fit
    ard_steps: int = 60
    ard_frequencies: int = 128
    ard_restarts: int = 0
    folds: int = 5  # folds (random) or windows (forward chaining) of the held-out objective
    outer_folds: int = 5  # test folds of diabetes and Friedman #1
    friedman_n: int = 300


FULL = Budget()
SMOKE = Budget(co2_steps=3, co2_start=1982.0, co2_frequency_scale=0.125, co2_restarts=0, ard_steps=3,
               ard_frequencies=16, folds=2, outer_folds=2, friedman_n=100)
DATASETS = ("co2", "diabetes", "friedman1")
CO2_SPLIT_YEAR, CO2_HORIZON = 1990.0, 3.0  # forward-chaining windows of 3 years; the single window is 4 years
CO2_RATE, ARD_RATE = 0.01, 0.05
CO2_STEP_SCALES = {"period": 0.03}  # ~30 seasonal cycles in the record
TRAINING_SOLVE = SolveOptions(atol=1e-8, btol=1e-8)

TEXTBOOK = "textbook values (exact GP)"
MARGINAL = "marginal likelihood (exact GP, sklearn)"
TEXTBOOK_FEATURES = "textbook values (random features)"
RANDOM_FOLDS = "held-out NLPD, random folds (lsqlab)"
FORWARD_CHAINING = "held-out NLPD, forward chaining (lsqlab)"
ONE_WINDOW = "held-out NLPD, one window (lsqlab)"


def co2_experiment(seed: int, budget: Budget = FULL) -> tuple[list[dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """CO2 extrapolation (train before 1990, test 1990-2001) by every method: table rows and, per method,
    the predictive mean and variance at the test months (``data.co2_split().x_test``)."""
    split = data.co2_split(CO2_SPLIT_YEAR)
    keep = split.x_train >= budget.co2_start
    years, ppm = split.x_train[keep], split.y_train[keep]
    center, offset = years.mean(), ppm.mean()
    x, y, x_test = years - center, ppm - offset, split.x_test - center
    rows, predictions = [], {}

    def record(method: str, mean: np.ndarray, variance: np.ndarray, seconds: float, fitted: Any):
        predictions[method] = (mean, variance)
        rows.append(_row("co2", method, seed, 0, split.y_test, mean, variance, seconds, fitted))

    for method, optimize in ((TEXTBOOK, False), (MARGINAL, True)):
        model, seconds = sklearn_fit(years, ppm, gpml_kernel(ppm.std()), optimize=optimize,
                                     restarts=budget.co2_restarts if optimize else 0, seed=seed)
        record(method, *sklearn_predict(model, split.x_test), seconds, model)
    counts = {name: max(1, round(count * budget.co2_frequency_scale)) for name, count in CO2_FREQUENCIES.items()}
    draws, hyper = co2_draws(seed, counts), co2_textbook()
    started = time.perf_counter()
    mean, variance = predict("co2", hyper, draws, x, y, x_test)
    record(TEXTBOOK_FEATURES, mean + offset, variance, time.perf_counter() - started, hyper)
    origins = [CO2_SPLIT_YEAR - CO2_HORIZON * k for k in range(budget.folds, 0, -1)]
    schemes = {RANDOM_FOLDS: data.kfold(len(y), budget.folds, seed=seed),
               FORWARD_CHAINING: forward_folds(years, origins, CO2_HORIZON),
               ONE_WINDOW: forward_folds(years, [CO2_SPLIT_YEAR - 4.0], 4.0)}
    for method, folds in schemes.items():
        result = fit("co2", hyper, draws, x, y, folds, steps=budget.co2_steps, learning_rate=CO2_RATE,
                     step_scales=CO2_STEP_SCALES, options=TRAINING_SOLVE)
        mean, variance = predict("co2", result.hyper, draws, x, y, x_test)
        record(method, mean + offset, variance, result.seconds, result)
    return rows, predictions


def ard_experiment(name: str, seed: int, budget: Budget = FULL) -> list[dict]:
    """Diabetes or Friedman #1 (a fresh draw per seed), ARD-RBF kernel, ``budget.outer_folds``-fold test:
    marginal likelihood (sklearn) against held-out NLPD over random inner folds (lsqlab). Table rows."""
    if name == "diabetes":
        inputs, targets = data.diabetes()
    elif name == "friedman1":
        inputs, targets = data.friedman1(budget.friedman_n, noise=1.0, seed=seed)
    else:
        raise ValueError(f"unknown data set {name!r}; choose diabetes or friedman1")
    from sklearn.exceptions import ConvergenceWarning

    dim, rows = inputs.shape[1], []
    for fold, (train, test) in enumerate(data.kfold(len(targets), budget.outer_folds, seed=seed)):
        x, x_test = data.standardize(inputs[train], inputs[test])
        offset, scale = targets[train].mean(), targets[train].std()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # lengthscales of irrelevant inputs hit the bound
            model, seconds = sklearn_fit(x, targets[train], ard_kernel(dim), optimize=True,
                                         restarts=budget.ard_restarts, seed=seed)
        rows.append(_row(name, MARGINAL, seed, fold, targets[test], *sklearn_predict(model, x_test), seconds, model))
        draws = ard_draws(1000 * seed + fold, dim, budget.ard_frequencies)
        y = (targets[train] - offset) / scale
        result = fit("ard", ard_initial(dim), draws, x, y, data.kfold(len(train), budget.folds, seed=seed),
                     steps=budget.ard_steps, learning_rate=ARD_RATE, options=TRAINING_SOLVE)
        mean, variance = predict("ard", result.hyper, draws, x, y, x_test)
        rows.append(_row(name, RANDOM_FOLDS, seed, fold, targets[test], mean * scale + offset, variance * scale**2,
                         result.seconds, result))
    return rows


def _row(dataset: str, method: str, seed: int, fold: int, y: np.ndarray, mean: np.ndarray, variance: np.ndarray,
         seconds: float, fitted: Any) -> dict:
    """One table row; ``fitted`` is a :class:`Fit`, fixed log hyperparameters, or a scikit-learn regressor."""
    result = fitted if isinstance(fitted, Fit) else None
    if isinstance(fitted, dict) or result is not None:
        values = positive(fitted if result is None else result.hyper)
        hyperparameters = " ".join(f"{k}={np.array2string(np.asarray(v), precision=4, max_line_width=10**4)}"
                                   for k, v in values.items())
    else:
        hyperparameters = str(fitted.kernel_)
    return {"dataset": dataset, "method": method, "seed": seed, "fold": fold,
            "rmse": float(rmse(y, mean)), "nlpd": float(nlpd(y, mean, variance)), "fit_s": seconds,
            "compile_s": 0.0 if result is None else result.compile_seconds,
            "lsmr_max_iterations": 0 if result is None else result.max_iterations,
            "solves_converged": "" if result is None else result.converged, "hyperparameters": hyperparameters}
