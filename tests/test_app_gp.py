"""GP hyperparameters by predictive performance: features, predictive distribution, hypergradients, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from lsqlab import data
from lsqlab.applications import gp_hyperparameters as gp

TIGHT = gp.SolveOptions(atol=1e-15, btol=1e-15)


@pytest.fixture(scope="module")
def co2_small():
    """Six years of monthly CO2 (72 points), centred; a small feature set (F > n: the dual branch)."""
    years, ppm = data.co2_monthly()
    keep = (years >= 1980) & (years < 1986)
    x, y = years[keep] - years[keep].mean(), ppm[keep] - ppm[keep].mean()
    draws = gp.co2_draws(3, {"trend": 4, "seasonal": 4, "medium": 16, "short": 16})
    return jnp.asarray(x[:, None]), jnp.asarray(y), draws


def test_periodic_weights_are_the_bessel_series():
    """q_j = e^{-1/l^2} I_j(1/l^2) (times 2 for j >= 1), and they sum to k(0) = 1 up to the truncation."""
    for smoothness in (0.8, 1.3, 3.0):
        q = np.asarray(gp.periodic_weights(jnp.asarray(smoothness), harmonics=12))
        j = np.arange(13)
        expected = scipy.special.ive(j, 1 / smoothness**2) * np.where(j == 0, 1, 2)
        np.testing.assert_allclose(q, expected, rtol=1e-12, atol=1e-15)
        assert abs(q.sum() - 1) < 1e-6


def test_hermite_rule_is_numpys_gauss_hermite_for_the_standard_normal():
    points, weights = gp.hermite_rule(20)
    nodes, reference = np.polynomial.hermite.hermgauss(20)
    np.testing.assert_allclose(points, np.sqrt(2) * nodes, atol=1e-12)
    np.testing.assert_allclose(weights, reference / np.sqrt(np.pi), rtol=1e-9, atol=1e-20)
    assert abs(float(weights @ points**4) - 3.0) < 1e-12  # E z^4 = 3


def test_gamma_quantile_and_its_shape_derivative_match_scipy():
    u = jnp.asarray([1e-6, 0.01, 0.3, 0.9, 0.999])
    quantile = jax.jit(gp.gamma_quantile)
    shape_derivative = jax.jit(jax.jacfwd(gp.gamma_quantile, argnums=1))
    for shape in (0.3, 0.78, 5.0):
        np.testing.assert_allclose(quantile(u, shape), scipy.stats.gamma.ppf(u, shape), rtol=1e-10)
        derivative = shape_derivative(u, shape)
        h = 1e-6 * shape
        reference = (scipy.stats.gamma.ppf(u, shape + h) - scipy.stats.gamma.ppf(u, shape - h)) / (2 * h)
        np.testing.assert_allclose(derivative, reference, rtol=1e-5)


def test_exact_kernel_is_sklearns_gpml_kernel():
    from sklearn.gaussian_process.kernels import WhiteKernel

    x = np.linspace(1960, 1975, 23)[:, None]
    kernel = gp.gpml_kernel()
    assert isinstance(kernel.k2, WhiteKernel)
    np.testing.assert_allclose(gp.exact_kernel("co2", gp.co2_textbook(), x, x), kernel.k1(x), rtol=1e-12)


FEATURES = jax.jit(gp.features, static_argnums=0)
CO2_COMPONENTS = ("trend", "seasonal", "medium", "short")


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
    hyper = {**gp.co2_textbook(), **gp.log_hyper({"trend_lengthscale": 2.0, "seasonal_decay": 2.0})}
    zero = gp.log_hyper(dict.fromkeys([f"{c}_amplitude" for c in CO2_COMPONENTS], 1e-30))
    exact = [gp.exact_kernel("co2", {**hyper, **zero, f"{c}_amplitude": hyper[f"{c}_amplitude"]}, x, x)
             for c in CO2_COMPONENTS]

    def co2_errors(count):
        def errors_of_seed(seed):
            phi = np.asarray(FEATURES("co2", hyper, gp.co2_draws(seed, dict.fromkeys(CO2_COMPONENTS, count)),
                                      jnp.asarray(x)))
            widths = np.cumsum([2 * count, 2 * count * (gp.HARMONICS + 1), 2 * count, 2 * count])[:-1]
            blocks = np.split(phi, widths, axis=1)
            return [np.linalg.norm(b @ b.T - k) / np.linalg.norm(k) for b, k in zip(blocks, exact)]
        return _rms_over_seeds(errors_of_seed)

    x_ard, hyper_ard = rng.standard_normal((50, 3)), gp.ard_initial(3)
    exact_ard = gp.exact_kernel("ard", hyper_ard, x_ard, x_ard)

    def ard_errors(count):
        def errors_of_seed(seed):
            phi = np.asarray(FEATURES("ard", hyper_ard, gp.ard_draws(seed, 3, count), jnp.asarray(x_ard)))
            return [np.linalg.norm(phi @ phi.T - exact_ard) / np.linalg.norm(exact_ard)]
        return _rms_over_seeds(errors_of_seed)

    for errors in (co2_errors, ard_errors):
        few, many = errors(8), errors(512)
        assert np.all(many < 0.25 * few), (few, many)


@pytest.mark.parametrize("count", [12, 60])  # F < n (primal Cholesky) and F > n (dual, Woodbury)
def test_predictive_mean_and_variance_equal_dense_ridge(count, rng):
    n = 40
    phi, phi_star = rng.standard_normal((n, count)), rng.standard_normal((7, count))
    y, noise = rng.standard_normal(n), 0.3
    mean, variance, info = gp.predictive(jnp.asarray(phi), jnp.asarray(y), jnp.asarray(phi_star), noise, TIGHT)
    assert bool(info.converged)
    inverse = np.linalg.inv(phi.T @ phi + noise**2 * np.eye(count))
    np.testing.assert_allclose(mean, phi_star @ inverse @ phi.T @ y, rtol=1e-9)
    np.testing.assert_allclose(variance, noise**2 * (1 + np.einsum("ij,jk,ik->i", phi_star, inverse, phi_star)),
                               rtol=1e-9)


def test_masked_quadratic_is_the_training_subset_quadratic(rng):
    phi, train = rng.standard_normal((30, 50)), (rng.uniform(size=30) < 0.6).astype(float)
    masked = gp.masked_quadratic(jnp.asarray(phi @ phi.T), jnp.asarray(train), 0.4)
    subset = gp.posterior_quadratic(jnp.asarray(phi[train == 1]), jnp.asarray(phi), 0.4)
    np.testing.assert_allclose(masked, subset, rtol=1e-9)


def test_nlpd_is_the_mean_gaussian_negative_log_density(rng):
    y, mean, variance = rng.standard_normal(20), rng.standard_normal(20), rng.uniform(0.1, 2.0, 20)
    expected = -np.mean(scipy.stats.norm.logpdf(y, mean, np.sqrt(variance)))
    assert abs(float(gp.nlpd(y, mean, variance)) - expected) < 1e-12


def dense_heldout_loss(hyper, draws, x, y, folds, loss):
    """The held-out loss with dense float64 solves, fold by fold: the finite-difference reference."""
    phi, noise = np.asarray(FEATURES("co2", hyper, draws, x)), float(jnp.exp(hyper["noise"]))
    y, losses = np.asarray(y), []
    for train, val in folds:
        precision = phi[train].T @ phi[train] + noise**2 * np.eye(phi.shape[1])
        mean = phi[val] @ np.linalg.solve(precision, phi[train].T @ y[train])
        if loss == "mse":
            losses.append(np.mean((y[val] - mean) ** 2))
        else:
            variance = noise**2 * (1 + np.sum(phi[val] * np.linalg.solve(precision, phi[val].T).T, axis=1))
            losses.append(-np.mean(scipy.stats.norm.logpdf(y[val], mean, np.sqrt(variance))))
    return np.mean(losses)


@pytest.mark.parametrize("loss", ["mse", "nlpd"])
def test_hypergradient_matches_central_differences(loss, co2_small):
    """d(held-out loss)/d(log hyperparameter) through lsqlab.lstsq (and, for NLPD, the Cholesky variance),
    against central differences of the same loss computed with dense float64 solves.

    The reference is smooth in theta up to rounding (an iterative solve would add its stopping error
    divided by h). With h = 1e-6 in log coordinates the truncation error is O((h / s)^2), s ~ 3e-3 the
    scale on which the period acts (30 cycles in the record): ~1e-7 relative; rounding in the dense
    solves, ~1e-14 absolute in L, adds ~1e-8 absolute; LSMR at tolerance 1e-15 (it stops at machine
    precision; at 1e-13 the period's gradient was off by 5e-7) ~1e-9. The check is
    max_i |g_i - r_i| <= 1e-6 max_i |r_i| (measured 1e-8 and 3e-8): the smallest components
    (|r| ~ 1e-4) are then checked to ~0.5 %, and a wrong rule, whose errors are O(1) relative, fails.
    """
    x, y, draws = co2_small
    folds = data.kfold(len(y), 3, seed=0)
    train, val = gp.fold_masks(folds, len(y))
    hyper = gp.co2_textbook()
    heldout = jax.jit(jax.value_and_grad(
        lambda h: gp.heldout_loss(h, draws, x, y, train, val, kind="co2", loss=loss, options=TIGHT), has_aux=True))
    (value, (_, converged)), grads = heldout(hyper)
    assert bool(converged)
    assert abs(float(value) - dense_heldout_loss(hyper, draws, x, y, folds, loss)) < 1e-9 * abs(float(value))
    names = ("trend_lengthscale", "medium_lengthscale", "medium_alpha", "period", "noise")
    adjoint = np.array([float(grads[name]) for name in names])
    reference = np.array([gp.central_difference(lambda h: dense_heldout_loss(h, draws, x, y, folds, loss), hyper, name,
                                                step=1e-6) for name in names])
    assert np.max(np.abs(adjoint - reference)) <= 1e-6 * np.max(np.abs(reference)), (names, adjoint, reference)


def test_training_reduces_the_heldout_loss(rng):
    x = rng.uniform(-2, 2, (60, 2))
    y = np.sin(2 * x[:, 0]) + 0.1 * rng.standard_normal(60)
    result = gp.fit("ard", gp.ard_initial(2), gp.ard_draws(0, 2, 24), x, y, data.kfold(60, 3, seed=0), steps=25,
                    learning_rate=0.1)
    assert result.converged and len(result.losses) == 25
    assert result.losses[-1] < 0.5 * result.losses[0]
    mean, _ = gp.predict("ard", result.hyper, gp.ard_draws(0, 2, 24), x, y, x)
    assert float(gp.rmse(y, mean)) < 0.3


def test_bad_input_raises(rng):
    phi, y = jnp.asarray(rng.standard_normal((10, 4))), jnp.asarray(rng.standard_normal(10))
    with pytest.raises(ValueError, match="damp"):
        gp.posterior_weights(phi, y, -0.1)
    with pytest.raises(ValueError, match="one row per target"):
        gp.posterior_weights(phi, y[:9], 0.1)
    with pytest.raises(ValueError, match="one row per target"):
        gp.predict("ard", gp.ard_initial(2), gp.ard_draws(0, 2, 4), np.zeros((10, 2)), np.zeros(9), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="input dimensions"):
        gp.predict("ard", gp.ard_initial(2), gp.ard_draws(0, 2, 4), np.zeros((10, 2)), np.zeros(10), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="unknown kernel"):
        gp.features("matern", gp.ard_initial(2), gp.ard_draws(0, 2, 4), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="overlap"):
        gp.fold_masks([(np.arange(5), np.arange(4, 8))], 10)
    with pytest.raises(ValueError, match="before it"):
        gp.forward_folds(np.arange(10.0), [0.0], 2.0)
    with pytest.raises(ValueError, match="> 0"):
        gp.log_hyper({"noise": 0.0})
    with pytest.raises(ValueError, match="step_scales"):
        gp.fit("ard", gp.ard_initial(2), gp.ard_draws(0, 2, 4), np.zeros((10, 2)), np.zeros(10),
               data.kfold(10, 2, seed=0), steps=1, step_scales={"periodd": 0.1})
