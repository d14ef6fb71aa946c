"""Offline data loaders: shapes, exact group actions, seeded splits."""

import numpy as np
import pytest

from lsqlab import data


def test_digits_are_scaled_images_with_ten_classes():
    images, labels = data.digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))


def test_rotate_c4_is_rot90_per_image_and_a_group_action():
    images = np.random.default_rng(0).random((6, 8, 8))
    turns = np.array([0, 1, 2, 3, 5, -1])
    rotated = data.rotate_c4(images, turns)
    for image, k, out in zip(images, turns, rotated):
        np.testing.assert_array_equal(out, np.rot90(image, k))
    np.testing.assert_array_equal(data.rotate_c4(data.rotate_c4(images, 1), 3), images)


def test_split_and_kfold_are_seeded_partitions():
    x, y = np.arange(20.0)[:, None], np.arange(20)
    first, again = data.split(x, y, test_fraction=0.25, seed=3), data.split(x, y, test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    assert len(first.y_test) == 5
    assert sorted(np.concatenate([first.y_train, first.y_test])) == list(range(20))
    folds = data.kfold(20, 4, seed=0)
    validation = np.concatenate([val for _, val in folds])
    assert sorted(validation) == list(range(20))
    assert all(np.intersect1d(train, val).size == 0 for train, val in folds)
    with pytest.raises(ValueError, match="test_fraction"):
        data.split(x, y, test_fraction=1.0, seed=0)
    with pytest.raises(ValueError, match="folds"):
        data.kfold(3, 4, seed=0)


def test_standardize_uses_training_statistics_only():
    train, test = np.array([[1.0, 5.0], [3.0, 5.0]]), np.array([[5.0, 6.0]])
    scaled_train, scaled_test = data.standardize(train, test)
    np.testing.assert_allclose(scaled_train, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(scaled_test, [[3.0, 1.0]])  # a constant column keeps scale 1


def test_co2_is_521_monthly_means_split_at_1990():
    years, ppm = data.co2_monthly()
    assert len(years) == 521 and np.all(np.diff(years) > 0) and np.isfinite(ppm).all()
    assert 310 < ppm[0] < 320 and 365 < ppm[-1] < 375  # Mauna Loa: ~315 ppm in 1958, ~370 in 2001
    parts = data.co2_split(1990.0)
    assert parts.x_train.max() < 1990.0 <= parts.x_test.min()
    assert len(parts.x_train) + len(parts.x_test) == 521


def test_regression_sets_load_offline():
    x, y = data.diabetes()
    assert x.shape == (442, 10) and y.shape == (442,)
    x, y = data.friedman1(100, noise=0.0, seed=0)
    expected = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3] + 5 * x[:, 4])
    np.testing.assert_allclose(y, expected)


@pytest.mark.parametrize("name", data.TOY_2D)
def test_toy_sets_are_seeded_and_in_range(name):
    points = data.toy_2d(name, 500, seed=1)
    assert points.shape == (500, 2)
    np.testing.assert_array_equal(points, data.toy_2d(name, 500, seed=1))
    assert not np.array_equal(points, data.toy_2d(name, 500, seed=2))
    assert np.abs(points).max() < 5.0


def test_checkerboard_fills_alternate_squares_only():
    points = data.toy_2d("checkerboard", 2000, seed=0)
    cells = np.floor(points / 2.0)  # squares of side 2
    assert np.all(cells.sum(axis=1) % 2 == 0)
    assert len(np.unique(cells, axis=0)) == 8
    with pytest.raises(ValueError, match="unknown 2-D data set"):
        data.toy_2d("moons", 10, seed=0)
