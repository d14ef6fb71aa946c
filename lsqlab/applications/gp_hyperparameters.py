"""Gaussian-process hyperparameters tuned for prediction, by differentiating through the solve.

A GP's kernel hyperparameters are usually fitted by marginal likelihood, which rewards explaining the
training data. Here a random-feature GP (:mod:`.random_features`, :mod:`.gp_posterior`) is tuned by Adam
on the held-out NLPD over folds instead, its gradient passing through lsqlab.lstsq (:mod:`.gp_tuning`),
and compared with exact GPs (scikit-learn, :mod:`.gp_baselines`).

Methods (:data:`LABELS`: the tables' words for them):
  textbook             exact GP at the GPML book's values;
  marginal_likelihood  exact GP fitted by marginal likelihood (L-BFGS-B, random restarts);
  textbook_features    random features at the book's values;
  random_folds         random features tuned by held-out NLPD over ``folds`` random folds;
  forward_chaining     the same over ``folds`` forward-chaining windows of CO2_HORIZON years before the split;
  one_window           the same over one window of 4 years before the split.
Data sets (:data:`DATASETS`, with the methods run on each): ``co2``, monthly Mauna Loa CO2 from
``co2_start`` to CO2_SPLIT_YEAR, tested on the years after (extrapolation), GPML kernel, every method;
``diabetes`` and ``friedman1`` (a fresh draw per seed), ARD-RBF kernel, ``outer_folds`` test folds per
seed (interpolation controls), marginal likelihood against random folds.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from lsqlab import data
from lsqlab.applications import tables
from lsqlab.applications.gp_baselines import ard_kernel, gpml_kernel, sklearn_fit, sklearn_predict
from lsqlab.applications.gp_posterior import SOLVE, nlpd, predict, rmse
from lsqlab.applications.gp_tuning import Fit, fit, forward_folds
from lsqlab.applications.random_features import (CO2_FREQUENCIES, ard_draws, ard_initial, co2_draws, co2_textbook,
                                                 positive)

METHODS = ("textbook", "marginal_likelihood", "textbook_features", "random_folds", "forward_chaining", "one_window")
DATASETS: dict[str, tuple[str, ...]] = {"co2": METHODS, "diabetes": ("marginal_likelihood", "random_folds"),
                                        "friedman1": ("marginal_likelihood", "random_folds")}
LABELS = {
    "textbook": "textbook values (exact GP)",
    "marginal_likelihood": "marginal likelihood (exact GP, sklearn)",
    "textbook_features": "textbook values (random features)",
    "random_folds": "held-out NLPD, random folds (lsqlab)",
    "forward_chaining": "held-out NLPD, forward chaining (lsqlab)",
    "one_window": "held-out NLPD, one window (lsqlab)",
}


@dataclass(frozen=True)
class Budget:
    """Sizes of the experiments; the defaults are the recorded table's, :data:`SMOKE` the tiny budget of
    tests, notebooks in smoke mode and ``--smoke``."""

    seeds: tuple[int, ...] = (0, 1, 2)
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


SMOKE = Budget(co2_steps=3, co2_start=1982.0, co2_frequency_scale=0.125, co2_restarts=0, ard_steps=3,
               ard_frequencies=16, folds=2, outer_folds=2, friedman_n=100)
CO2_SPLIT_YEAR, CO2_HORIZON = 1990.0, 3.0  # forward-chaining windows of 3 years; the single window is 4 years
CO2_RATE, ARD_RATE = 0.01, 0.05
CO2_STEP_SCALES = {"period": 0.03}  # ~30 seasonal cycles in the record
TRAINING_SOLVE = replace(SOLVE, atol=1e-8, btol=1e-8)  # the solves inside the held-out loss


class Forecast(NamedTuple):
    """One method's predictive distribution at the test inputs, its fit time and what it fitted."""

    mean: np.ndarray
    variance: np.ndarray
    fit_s: float  # wall time of the fit (for fixed hyperparameters: of the prediction)
    fitted: Any  # a gp_tuning.Fit, fixed log hyperparameters, or a fitted scikit-learn regressor


def run(method: str, seed: int, budget: Budget = Budget(), dataset: str = "co2") -> list[dict]:
    """Table rows of ``method`` on ``dataset`` for one seed: a list, because diabetes and friedman1 are
    tested on ``budget.outer_folds`` folds, a row each (co2 has one test period: one row)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}; choose one of {list(DATASETS)}")
    if method not in DATASETS[dataset]:
        raise ValueError(f"method {method!r} is not run on {dataset}; choose one of {DATASETS[dataset]}")
    if dataset == "co2":
        y_test = data.co2_split(CO2_SPLIT_YEAR).y_test
        return [row("co2", method, seed, 0, y_test, co2_forecast(method, seed, budget))]
    return [row(dataset, method, seed, fold, y_test, forecast)
            for fold, (y_test, forecast) in enumerate(_ard_forecasts(method, dataset, seed, budget))]


def co2_forecast(method: str, seed: int, budget: Budget = Budget()) -> Forecast:
    """``method`` fitted on CO2 from ``budget.co2_start`` to CO2_SPLIT_YEAR, predicting the test months
    (``data.co2_split(CO2_SPLIT_YEAR).x_test``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    split = data.co2_split(CO2_SPLIT_YEAR)
    keep = split.x_train >= budget.co2_start
    years, ppm = split.x_train[keep], split.y_train[keep]
    if method in ("textbook", "marginal_likelihood"):
        optimize = method == "marginal_likelihood"
        model, seconds = sklearn_fit(years, ppm, gpml_kernel(ppm.std()), optimize=optimize,
                                     restarts=budget.co2_restarts if optimize else 0, seed=seed)
        return Forecast(*sklearn_predict(model, split.x_test), seconds, model)
    center, offset = years.mean(), ppm.mean()
    x, y, x_test = years - center, ppm - offset, split.x_test - center
    counts = {name: max(1, round(count * budget.co2_frequency_scale)) for name, count in CO2_FREQUENCIES.items()}
    draws, hyper = co2_draws(seed, counts), co2_textbook()
    if method == "textbook_features":
        started = time.perf_counter()
        mean, variance = predict("co2", hyper, draws, x, y, x_test)
        return Forecast(mean + offset, variance, time.perf_counter() - started, hyper)
    if method == "random_folds":
        folds = data.kfold(len(y), budget.folds, seed=seed)
    elif method == "forward_chaining":
        folds = forward_folds(years, [CO2_SPLIT_YEAR - CO2_HORIZON * k for k in range(budget.folds, 0, -1)],
                              CO2_HORIZON)
    else:
        folds = forward_folds(years, [CO2_SPLIT_YEAR - 4.0], 4.0)
    result = fit("co2", hyper, draws, x, y, folds, steps=budget.co2_steps, learning_rate=CO2_RATE,
                 step_scales=CO2_STEP_SCALES, options=TRAINING_SOLVE)
    mean, variance = predict("co2", result.hyper, draws, x, y, x_test)
    return Forecast(mean + offset, variance, result.seconds, result)


def _ard_forecasts(method: str, dataset: str, seed: int, budget: Budget) -> list[tuple[np.ndarray, Forecast]]:
    """``method`` (ARD-RBF kernel) on diabetes or Friedman #1 (a fresh draw per seed): per test fold of
    ``budget.outer_folds``, the test targets and the forecast."""
    if dataset == "diabetes":
        inputs, targets = data.diabetes()
    else:
        inputs, targets = data.friedman1(budget.friedman_n, noise=1.0, seed=seed)
    from sklearn.exceptions import ConvergenceWarning

    dim, forecasts = inputs.shape[1], []
    for fold, (train, test) in enumerate(data.kfold(len(targets), budget.outer_folds, seed=seed)):
        x, x_test = data.standardize(inputs[train], inputs[test])
        if method == "marginal_likelihood":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # lengthscales of irrelevant inputs hit the bound
                model, seconds = sklearn_fit(x, targets[train], ard_kernel(dim), optimize=True,
                                             restarts=budget.ard_restarts, seed=seed)
            forecasts.append((targets[test], Forecast(*sklearn_predict(model, x_test), seconds, model)))
            continue
        offset, scale = targets[train].mean(), targets[train].std()
        draws = ard_draws(1000 * seed + fold, dim, budget.ard_frequencies)
        y = (targets[train] - offset) / scale
        result = fit("ard", ard_initial(dim), draws, x, y, data.kfold(len(train), budget.folds, seed=seed),
                     steps=budget.ard_steps, learning_rate=ARD_RATE, options=TRAINING_SOLVE)
        mean, variance = predict("ard", result.hyper, draws, x, y, x_test)
        forecasts.append((targets[test], Forecast(mean * scale + offset, variance * scale**2, result.seconds, result)))
    return forecasts


def row(dataset: str, method: str, seed: int, fold: int, y: np.ndarray, forecast: Forecast) -> dict:
    """One table row: the forecast's RMSE and NLPD against the test targets ``y``, its times, the solves'
    diagnostics (for a :class:`~.gp_tuning.Fit`) and the hyperparameters it ended with."""
    result = forecast.fitted if isinstance(forecast.fitted, Fit) else None
    if isinstance(forecast.fitted, dict) or result is not None:
        values = positive(forecast.fitted if result is None else result.hyper)
        hyperparameters = " ".join(f"{k}={np.array2string(np.asarray(v), precision=4, max_line_width=10**4)}"
                                   for k, v in values.items())
    else:
        hyperparameters = str(forecast.fitted.kernel_)
    return {"dataset": dataset, "method": method, "seed": seed, "fold": fold,
            "rmse": float(rmse(y, forecast.mean)), "nlpd": float(nlpd(y, forecast.mean, forecast.variance)),
            "fit_s": forecast.fit_s, "compile_s": 0.0 if result is None else result.compile_seconds,
            "lsmr_max_iterations": 0 if result is None else result.max_iterations,
            "solves_converged": "" if result is None else result.converged, "hyperparameters": hyperparameters}


def all_runs(budget: Budget) -> list[dict]:
    """Every seed, data set and method of the main table: one row per run and test fold, each method
    under its :data:`LABELS` entry."""
    return [{**one, "method": LABELS[method]} for seed in budget.seeds for dataset, methods in DATASETS.items()
            for method in methods for one in run(method, seed, budget, dataset)]


TABLES = {"gp": tables.Table(
    "gp", by=("dataset", "method"), metrics=("rmse", "nlpd", "fit_s", "compile_s"), rows=all_runs,
    columns={"dataset": ("data set", None), "method": ("method", None), "rmse": ("RMSE", "low"),
             "nlpd": ("NLPD", "low"), "fit_s": ("fit time (s)", "low"), "compile_s": ("compile time (s)", None)},
    ranked_within=("dataset", "data set"))}
