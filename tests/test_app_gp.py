"""The random-feature GP: predictive distribution, held-out loss and its hypergradient, training, and the
application's runs."""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from lsqlab import data
from lsqlab.applications import gp_hyperparameters as app
from lsqlab.applications import gp_posterior, gp_tuning
from lsqlab.applications import random_features as rf

TIGHT = replace(gp_posterior.SOLVE, atol=1e-15, btol=1e-15)
FEATURES = jax.jit(rf.features, static_argnums=0)


@pytest.fixture(scope="module")
def co2_small():
    """Six years of monthly CO2 (72 points), centred; a small feature set (F > n: the dual branch)."""
    years, ppm = data.co2_monthly()
    keep = (years >= 1980) & (years < 1986)
    x, y = years[keep] - years[keep].mean(), ppm[keep] - ppm[keep].mean()
    draws = rf.co2_draws(3, {"trend": 4, "seasonal": 4, "medium": 16, "short": 16})
    return jnp.asarray(x[:, None]), jnp.asarray(y), draws


@pytest.mark.parametrize("count", [12, 60])  # F < n (primal Cholesky) and F > n (dual, Woodbury)
def test_predictive_mean_and_variance_equal_dense_ridge(count, rng):
    n = 40
    phi, phi_star = rng.standard_normal((n, count)), rng.standard_normal((7, count))
    y, noise = rng.standard_normal(n), 0.3
    mean, variance, info = gp_posterior.predictive(jnp.asarray(phi), jnp.asarray(y), jnp.asarray(phi_star), noise,
                                                   TIGHT)
    assert bool(info.converged)
    inverse = np.linalg.inv(phi.T @ phi + noise**2 * np.eye(count))
    np.testing.assert_allclose(mean, phi_star @ inverse @ phi.T @ y, rtol=1e-9)
    np.testing.assert_allclose(variance, noise**2 * (1 + np.einsum("ij,jk,ik->i", phi_star, inverse, phi_star)),
                               rtol=1e-9)


def test_masked_quadratic_is_the_training_subset_quadratic(rng):
    phi, train = rng.standard_normal((30, 50)), (rng.uniform(size=30) < 0.6).astype(float)
    masked = gp_posterior.masked_quadratic(jnp.asarray(phi @ phi.T), jnp.asarray(train), 0.4)
    subset = gp_posterior.posterior_quadratic(jnp.asarray(phi[train == 1]), jnp.asarray(phi), 0.4)
    np.testing.assert_allclose(masked, subset, rtol=1e-9)


def test_nlpd_is_the_mean_gaussian_negative_log_density(rng):
    y, mean, variance = rng.standard_normal(20), rng.standard_normal(20), rng.uniform(0.1, 2.0, 20)
    expected = -np.mean(scipy.stats.norm.logpdf(y, mean, np.sqrt(variance)))
    assert abs(float(gp_posterior.nlpd(y, mean, variance)) - expected) < 1e-12


def dense_heldout_nlpd(hyper, draws, x, y, folds):
    """The held-out NLPD with dense float64 solves, fold by fold: the finite-difference reference."""
    phi, noise = np.asarray(FEATURES("co2", hyper, draws, x)), float(jnp.exp(hyper["noise"]))
    y, losses = np.asarray(y), []
    for train, val in folds:
        precision = phi[train].T @ phi[train] + noise**2 * np.eye(phi.shape[1])
        mean = phi[val] @ np.linalg.solve(precision, phi[train].T @ y[train])
        variance = noise**2 * (1 + np.sum(phi[val] * np.linalg.solve(precision, phi[val].T).T, axis=1))
        losses.append(-np.mean(scipy.stats.norm.logpdf(y[val], mean, np.sqrt(variance))))
    return np.mean(losses)


def test_hypergradient_matches_central_differences(co2_small):
    """d(held-out NLPD)/d(log hyperparameter) through lsqlab.lstsq and the Cholesky variance, against
    central differences of the same loss computed with dense float64 solves.

    The reference is smooth in theta up to rounding (an iterative solve would add its stopping error
    divided by h). With h = 1e-6 in log coordinates the truncation error is O((h / s)^2), s ~ 3e-3 the
    scale on which the period acts (30 cycles in the record): ~1e-7 relative; rounding in the dense
    solves, ~1e-14 absolute in L, adds ~1e-8 absolute; LSMR at tolerance 1e-15 (it stops at machine
    precision) ~1e-9. The check is max_i |g_i - r_i| <= 1e-6 max_i |r_i|: the smallest components
    (|r| ~ 1e-4) are then checked to ~0.5 %, and a wrong rule, whose errors are O(1) relative, fails.
    """
    x, y, draws = co2_small
    folds = data.kfold(len(y), 3, seed=0)
    train, val = gp_tuning.fold_masks(folds, len(y))
    hyper = rf.co2_textbook()
    heldout = jax.jit(jax.value_and_grad(
        lambda h: gp_tuning.heldout_loss(h, draws, x, y, train, val, kind="co2", options=TIGHT), has_aux=True))
    (value, (_, converged)), grads = heldout(hyper)
    assert bool(converged)
    assert abs(float(value) - dense_heldout_nlpd(hyper, draws, x, y, folds)) < 1e-9 * abs(float(value))
    names = ("trend_lengthscale", "medium_lengthscale", "medium_alpha", "period", "noise")
    adjoint = np.array([float(grads[name]) for name in names])
    reference = np.array([gp_tuning.central_difference(lambda h: dense_heldout_nlpd(h, draws, x, y, folds), hyper,
                                                       name, step=1e-6) for name in names])
    assert np.max(np.abs(adjoint - reference)) <= 1e-6 * np.max(np.abs(reference)), (names, adjoint, reference)


def test_training_reduces_the_heldout_loss(rng):
    x = rng.uniform(-2, 2, (60, 2))
    y = np.sin(2 * x[:, 0]) + 0.1 * rng.standard_normal(60)
    result = gp_tuning.fit("ard", rf.ard_initial(2), rf.ard_draws(0, 2, 24), x, y, data.kfold(60, 3, seed=0),
                           steps=25, learning_rate=0.1)
    assert result.converged and len(result.losses) == 25
    assert result.losses[-1] < 0.5 * result.losses[0]
    mean, _ = gp_posterior.predict("ard", result.hyper, rf.ard_draws(0, 2, 24), x, y, x)
    assert float(gp_posterior.rmse(y, mean)) < 0.3


def test_bad_input_raises(rng):
    phi, y = jnp.asarray(rng.standard_normal((10, 4))), jnp.asarray(rng.standard_normal(10))
    with pytest.raises(ValueError, match="damp"):
        gp_posterior.posterior_weights(phi, y, -0.1)
    with pytest.raises(ValueError, match="one row per target"):
        gp_posterior.posterior_weights(phi, y[:9], 0.1)
    hyper, draws = rf.ard_initial(2), rf.ard_draws(0, 2, 4)
    with pytest.raises(ValueError, match="one row per target"):
        gp_posterior.predict("ard", hyper, draws, np.zeros((10, 2)), np.zeros(9), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="input dimensions"):
        gp_posterior.predict("ard", hyper, draws, np.zeros((10, 2)), np.zeros(10), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="overlap"):
        gp_tuning.fold_masks([(np.arange(5), np.arange(4, 8))], 10)
    with pytest.raises(ValueError, match="before it"):
        gp_tuning.forward_folds(np.arange(10.0), [0.0], 2.0)
    with pytest.raises(ValueError, match="step_scales"):
        gp_tuning.fit("ard", hyper, draws, np.zeros((10, 2)), np.zeros(10), data.kfold(10, 2, seed=0), steps=1,
                      step_scales={"periodd": 0.1})
    with pytest.raises(ValueError, match="steps"):
        gp_tuning.fit("ard", hyper, draws, np.zeros((10, 2)), np.zeros(10), data.kfold(10, 2, seed=0), steps=0)


def test_run_gives_a_row_per_test_fold_with_the_tables_columns():
    """One smoke run of the tuned ARD GP on Friedman #1: a row per outer test fold, the table's columns,
    converged solves, and an RMSE below the targets' standard deviation (it learned something)."""
    table = app.TABLES["gp"]
    rows = app.run("random_folds", 0, app.SMOKE, dataset="friedman1")
    assert [row["fold"] for row in rows] == list(range(app.SMOKE.outer_folds))
    _, targets = data.friedman1(app.SMOKE.friedman_n, noise=1.0, seed=0)
    for row in rows:
        assert {*table.by, *table.metrics} <= set(row) and row["method"] == "random_folds"
        assert row["solves_converged"] is True and 0 < row["lsmr_max_iterations"]
        assert row["rmse"] < np.std(targets)
    assert set(app.LABELS) == set(app.METHODS) and all(set(m) <= set(app.METHODS) for m in app.DATASETS.values())
    with pytest.raises(ValueError, match="not run on diabetes"):
        app.run("textbook", 0, app.SMOKE, dataset="diabetes")
    with pytest.raises(ValueError, match="unknown data set"):
        app.run("random_folds", 0, app.SMOKE, dataset="mnist")
    with pytest.raises(ValueError, match="unknown method"):
        app.co2_forecast("loo", 0, app.SMOKE)
