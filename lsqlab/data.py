"""Offline data for the applications: every loader reads files shipped with scikit-learn or
statsmodels, or generates data from a seed. Nothing here touches the network.

Images are float arrays in [0, 1]; splits and generated sets are deterministic functions of ``seed``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

TOY_2D = ("checkerboard", "eight_gaussians", "two_spirals")


class Split(NamedTuple):
    """A train/test split: inputs and targets for each part."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images (1797, 8, 8) scaled to [0, 1] and labels (1797,) in 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images / 16.0, bunch.target.astype(np.int64)


def rotate_c4(images: np.ndarray, k: int | np.ndarray) -> np.ndarray:
    """Rotate a batch of square images (..., n, n) by k quarter turns (np.rot90: an exact C4 action).

    ``k`` is one integer for the whole batch or an integer array with one entry per image.
    """
    k_all = np.broadcast_to(np.asarray(k) % 4, images.shape[:1])
    out = np.empty_like(images)
    for quarter in range(4):
        chosen = k_all == quarter
        out[chosen] = np.rot90(images[chosen], quarter, axes=(-2, -1))
    return out


def split(x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int) -> Split:
    """A seeded random split with ``round(test_fraction * n)`` test points."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])


def kfold(n: int, folds: int, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded k-fold cross-validation: ``folds`` pairs (train indices, validation indices)."""
    if not 2 <= folds <= n:
        raise ValueError(f"need 2 <= folds <= n, got folds={folds}, n={n}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    return [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(part)) for i, part in enumerate(parts)]


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scale columns to zero mean and unit variance using the statistics of ``train`` only."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple((a - mean) / std for a in (train, *others))


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes regression set: 442 patients, 10 features, disease progression."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return bunch.data, bunch.target.astype(np.float64)


def friedman1(n: int = 500, *, noise: float = 1.0, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Friedman #1: y = 10 sin(pi x1 x2) + 20 (x3 - 1/2)^2 + 10 x4 + 5 x5 + noise, x uniform in [0, 1]^10."""
    from sklearn.datasets import make_friedman1

    return make_friedman1(n_samples=n, n_features=10, noise=noise, random_state=seed)


def co2_monthly() -> tuple[np.ndarray, np.ndarray]:
    """Mauna Loa CO2 (statsmodels, weekly 1958-2001) as monthly means: decimal years and ppm.

    Months without any weekly value are dropped: 521 points from March 1958 to December 2001.
    """
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().dropna()
    years = monthly.index.year + (monthly.index.month - 1) / 12.0
    return np.asarray(years, dtype=np.float64), monthly.to_numpy(dtype=np.float64)


def co2_split(before: float = 1990.0) -> Split:
    """CO2 as an extrapolation task: train on months before ``before``, test on the rest."""
    years, ppm = co2_monthly()
    train = years < before
    return Split(years[train], ppm[train], years[~train], ppm[~train])


def toy_2d(name: str, n: int, *, seed: int) -> np.ndarray:
    """``n`` points (n, 2) from a 2-D toy distribution: checkerboard, eight_gaussians or two_spirals.

    Scaled to roughly [-4, 4]^2, the usual range for score-model demonstrations.
    """
    rng = np.random.default_rng(seed)
    if name == "checkerboard":
        x1 = rng.uniform(-2.0, 2.0, n)  # 4 x 4 unit squares, then scaled by 2
        x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
        return 2.0 * np.stack([x1, x2], axis=1)
    if name == "eight_gaussians":
        angles = 2 * np.pi * rng.integers(0, 8, n) / 8
        centers = 3.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return centers + 0.3 * rng.standard_normal((n, 2))
    if name == "two_spirals":
        t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3 * np.pi
        sign = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
        points = sign[:, None] * np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 2.5
        return points + 0.1 * rng.standard_normal((n, 2))
    raise ValueError(f"unknown 2-D data set {name!r}; choose one of {TOY_2D}")
