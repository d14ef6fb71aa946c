"""The exact-GP baselines (scikit-learn): the GPML CO2 kernel and an ARD-RBF kernel, fitted by marginal
likelihood or kept at given values.

An exact GP maximises the evidence log p(y | theta) = -y^T K_y^{-1} y / 2 - log det K_y / 2 - n log(2 pi) / 2,
K_y = K + sigma^2 I, over its kernel hyperparameters (L-BFGS-B, optional random restarts), with O(n^3)
Cholesky factorisations; the random-feature GP of :mod:`.gp_tuning` is tuned for prediction instead.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lsqlab.applications.random_features import GPML_TEXTBOOK


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
    """a^2 ARD-RBF + white noise for scikit-learn, at the same start as
    :func:`lsqlab.applications.random_features.ard_initial`."""
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
