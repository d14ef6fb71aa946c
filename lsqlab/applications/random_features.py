"""Random Fourier features of the GP kernels, differentiable in the kernel's hyperparameters.

A kernel k(x, x') is approximated by phi(x)^T phi(x') from a rule (z_i, c_i) for E f(z), z ~ N(0, I):
fixed base points, reparametrised by the hyperparameters theta (stored as logarithms in a dict).
  RBF a^2 exp(-|tau|^2 / 2 l^2):  phi(x) = a [sqrt(c_i) cos(x w_i), sqrt(c_i) sin(x w_i)],  w_i = z_i / l
      (so phi(x)^T phi(x') = a^2 sum_i c_i cos(w_i^T (x - x')) ~ a^2 E cos(z^T (x - x') / l) = the kernel);
  periodic exp(-2 sin^2(pi tau / p) / l^2) = sum_j q_j cos(2 pi j tau / p), q_0 = c_0, q_j = 2 c_j,
      c_j = e^{-1/l^2} I_j(1/l^2), computed as the DFT of the kernel over one period (trapezoid rule,
      exact up to aliasing) and truncated after J harmonics; the product a^2 RBF(l_d) * periodic has
      frequencies v_ij = z_i / l_d + 2 pi j / p and weights a^2 c_i q_j, because
      E cos((w + 2 pi j / p) tau) = cos(2 pi j tau / p) E cos(w tau) for symmetric w;
  rational quadratic a^2 (1 + tau^2 / (2 alpha l^2))^{-alpha} = E_g exp(-g tau^2 / 2),
      g ~ Gamma(shape alpha, rate alpha l^2): frequencies w_i = z_i sqrt(g_i), g_i = G^{-1}(u_i; alpha) /
      (alpha l^2) with G^{-1} the Gamma(alpha, 1) quantile (:mod:`.gamma_quantile`, differentiable in alpha).
Rules: the smooth, long CO2 terms (trend, seasonal decay) use Gauss-Hermite quadrature (deterministic,
exact for polynomials of degree < 2D; the data span is under one lengthscale); the rational quadratic
and the short term use stratified Monte Carlo (one draw per equal-probability stratum, c_i = 1/D; the
RQ's z and u strata paired at random, a Latin hypercube); the ARD kernel plain Monte Carlo, z ~ N(0, I_d).

Kernels: ``"co2"`` is the GPML Mauna Loa kernel (Rasmussen & Williams 2006, section 5.4.3): a long RBF
trend, a decaying periodic seasonal term, a rational-quadratic medium-term term and a short RBF term
(its white noise is the GP's noise, not a feature); ``"ard"`` is an RBF with one lengthscale per input
dimension. :func:`exact_kernel` is each kernel in closed form, the reference for the features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab.applications.gamma_quantile import gamma_quantile

Hyper = dict[str, jax.Array]  # log hyperparameters
KERNELS = ("co2", "ard")

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


# ---------------------------------------------------------------- hyperparameters and base rules


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


# ---------------------------------------------------------------- features


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


