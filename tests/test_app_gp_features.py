"""Random features of the GP kernels and the Gamma quantile they need, against closed forms and SciPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from lsqlab.applications import gp_baselines
from lsqlab.applications import random_features as rf
from lsqlab.applications.gamma_quantile import gamma_quantile

FEATURES = jax.jit(rf.features, static_argnums=0)
CO2_COMPONENTS = ("trend", "seasonal", "medium", "short")


def test_periodic_weights_are_the_bessel_series():
    """q_j = e^{-1/l^2} I_j(1/l^2) (times 2 for j >= 1), and they sum to k(0) = 1 up to the truncation."""
    for smoothness in (0.8, 1.3, 3.0):
        q = np.asarray(rf.periodic_weights(jnp.asarray(smoothness), harmonics=12))
        j = np.arange(13)
        expected = scipy.special.ive(j, 1 / smoothness**2) * np.where(j == 0, 1, 2)
        np.testing.assert_allclose(q, expected, rtol=1e-12, atol=1e-15)
        assert abs(q.sum() - 1) < 1e-6


def test_hermite_rule_is_numpys_gauss_hermite_for_the_standard_normal():
    points, weights = rf.hermite_rule(20)
    nodes, reference = np.polynomial.hermite.hermgauss(20)
    np.testing.assert_allclose(points, np.sqrt(2) * nodes, atol=1e-12)
    np.testing.assert_allclose(weights, reference / np.sqrt(np.pi), rtol=1e-9, atol=1e-20)
    assert abs(float(weights @ points**4) - 3.0) < 1e-12  # E z^4 = 3


def test_gamma_quantile_and_its_shape_derivative_match_scipy():
    u = jnp.asarray([1e-6, 0.01, 0.3, 0.9, 0.999])
    quantile = jax.jit(gamma_quantile)
    shape_derivative = jax.jit(jax.jacfwd(gamma_quantile, argnums=1))
    for shape in (0.3, 0.78, 5.0):
        np.testing.assert_allclose(quantile(u, shape), scipy.stats.gamma.ppf(u, shape), rtol=1e-10)
        derivative = shape_derivative(u, shape)
        h = 1e-6 * shape
        reference = (scipy.stats.gamma.ppf(u, shape + h) - scipy.stats.gamma.ppf(u, shape - h)) / (2 * h)
        np.testing.assert_allclose(derivative, reference, rtol=1e-5)


def test_exact_kernel_is_sklearns_gpml_kernel():
    from sklearn.gaussian_process.kernels import WhiteKernel

    x = np.linspace(1960, 1975, 23)[:, None]
    kernel = gp_baselines.gpml_kernel()
    assert isinstance(kernel.k2, WhiteKernel)
    np.testing.assert_allclose(rf.exact_kernel("co2", rf.co2_textbook(), x, x), kernel.k1(x), rtol=1e-12)


def _rms_over_seeds(errors_of_seed) -> np.ndarray:
    return np.sqrt(np.mean([np.square(errors_of_seed(seed)) for seed in range(16)], axis=0))


def test_random_feature_kernels_approach_the_exact_kernels(rng):
    """Phi Phi^T -> K as the rules grow from 8 to 512 points, for each CO2 term against its own closed form
    (its own block of feature columns) and for the ARD kernel.

    Monte Carlo (ARD): E ||Phi Phi^T - K||_F^2 is proportional to 1/D, so the root mean square over
    seeds falls 8x for 64x the points; stratified draws (RQ, short term) fall faster, Gauss-Hermite
    (trend, seasonal decay; lengthscales shortened to 2 here so that 8 nodes are visibly wrong) much
    faster. Asserted: at least 4x.
    """
    x = np.linspace(-10, 10, 50)[:, None]
    hyper = {**rf.co2_textbook(), **rf.log_hyper({"trend_lengthscale": 2.0, "seasonal_decay": 2.0})}
    zero = rf.log_hyper(dict.fromkeys([f"{c}_amplitude" for c in CO2_COMPONENTS], 1e-30))
    exact = [rf.exact_kernel("co2", {**hyper, **zero, f"{c}_amplitude": hyper[f"{c}_amplitude"]}, x, x)
             for c in CO2_COMPONENTS]

    def co2_errors(count):
        def errors_of_seed(seed):
            phi = np.asarray(FEATURES("co2", hyper, rf.co2_draws(seed, dict.fromkeys(CO2_COMPONENTS, count)),
                                      jnp.asarray(x)))
            widths = np.cumsum([2 * count, 2 * count * (rf.HARMONICS + 1), 2 * count, 2 * count])[:-1]
            blocks = np.split(phi, widths, axis=1)
            return [np.linalg.norm(b @ b.T - k) / np.linalg.norm(k) for b, k in zip(blocks, exact)]
        return _rms_over_seeds(errors_of_seed)

    x_ard, hyper_ard = rng.standard_normal((50, 3)), rf.ard_initial(3)
    exact_ard = rf.exact_kernel("ard", hyper_ard, x_ard, x_ard)

    def ard_errors(count):
        def errors_of_seed(seed):
            phi = np.asarray(FEATURES("ard", hyper_ard, rf.ard_draws(seed, 3, count), jnp.asarray(x_ard)))
            return [np.linalg.norm(phi @ phi.T - exact_ard) / np.linalg.norm(exact_ard)]
        return _rms_over_seeds(errors_of_seed)

    for errors in (co2_errors, ard_errors):
        few, many = errors(8), errors(512)
        assert np.all(many < 0.25 * few), (few, many)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="unknown kernel"):
        rf.features("matern", rf.ard_initial(2), rf.ard_draws(0, 2, 4), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="unknown kernel"):
        rf.exact_kernel("matern", rf.ard_initial(2), np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="> 0"):
        rf.log_hyper({"noise": 0.0})
