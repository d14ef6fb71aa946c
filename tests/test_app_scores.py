"""Conservative score models (lsqlab.applications.scores): exact scores, Jacobians, measures, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn.neighbors import NearestNeighbors

from lsqlab import nullspace
from lsqlab.applications import mlp, scores
from lsqlab.data import toy_2d

jacobians = jax.jit(scores.score_jacobians)  # one compilation instead of every operation's own


def central_difference(f, x, h):
    """d f / d x_j for f: (k, 2) -> (k,) (or (k, 2)), by central differences, stacked on the last axis."""
    columns = []
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, j] = h
        columns.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("sigma", [0.1, 0.7, 3.0])
def test_exact_score_is_the_gradient_of_the_mixture_log_density(rng, sigma):
    data = jnp.asarray(rng.standard_normal((7, 2)))
    x = rng.standard_normal((5, 2)) * 1.5
    log_p = lambda y: scores.exact_log_density(jnp.asarray(y), sigma, data)  # noqa: E731
    # central differences in float64: truncation ~h^2 |f'''|, rounding ~1e-16 |f| / h
    reference = central_difference(log_p, x, h=1e-5 * sigma)
    np.testing.assert_allclose(scores.exact_score(jnp.asarray(x), sigma, data), reference, rtol=1e-6, atol=1e-6)


def test_exact_log_density_matches_scipy_mixture(rng):
    data = rng.standard_normal((4, 2))
    x, sigma = rng.standard_normal((3, 2)), 0.8
    dense = np.log(np.mean([scipy.stats.multivariate_normal(mu, sigma**2 * np.eye(2)).pdf(x) for mu in data], axis=0))
    np.testing.assert_allclose(scores.exact_log_density(jnp.asarray(x), sigma, jnp.asarray(data)), dense, rtol=1e-12)


def test_exact_score_of_one_point_is_the_gaussian_score(rng):
    center = rng.standard_normal((1, 2))
    x, sigma = rng.standard_normal((6, 2)) * 4, rng.uniform(0.1, 3.0, 6)
    gaussian = (center - x) / sigma[:, None] ** 2
    np.testing.assert_allclose(scores.exact_score(jnp.asarray(x), jnp.asarray(sigma), jnp.asarray(center)),
                               gaussian, rtol=1e-13)


def test_exact_score_is_finite_far_from_the_data_at_small_sigma():
    data = jnp.asarray([[0.0, 0.0], [1.0, 0.0]])
    s = scores.exact_score(jnp.asarray([[40.0, 0.0]]), 0.1, data)  # logits ~ -8e4: naive exp underflows
    np.testing.assert_allclose(s, [[-3900.0, 0.0]], rtol=1e-12)  # the nearest point wins: (1 - 40) / 0.01


def test_score_jacobians_match_finite_differences_and_the_energy_model_is_symmetric(rng):
    x, sigma = jnp.asarray(rng.standard_normal((4, 2))), jnp.asarray(rng.uniform(0.1, 3.0, 4))
    for method in ("plain", "energy"):
        params = scores.init_model(jax.random.key(1), method, width=16, depth=2)
        jac = np.asarray(jacobians(params, x, sigma))
        fd = central_difference(lambda y: scores.model_score(params)(jnp.asarray(y), sigma), np.asarray(x), 1e-6)
        np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-6 * np.abs(jac).max())
        asymmetry = np.asarray(scores.nasym(jnp.asarray(jac)))
        if method == "energy":
            assert asymmetry.max() < 1e-20  # ||(J - J^T)/2||_F / ||J||_F < 1e-10
        else:
            assert asymmetry.min() > 1e-6  # a generic vector field is not a gradient


def test_energy_model_score_is_minus_the_gradient_of_energy_over_sigma(rng):
    params = scores.init_model(jax.random.key(2), "energy", width=8, depth=2)
    x, sigma = rng.standard_normal((3, 2)), jnp.asarray([0.2, 1.0, 2.5])

    def energy(y):
        inputs = jnp.concatenate([jnp.asarray(y), jnp.log(sigma)[:, None]], axis=1)
        return mlp.apply(params, inputs)[:, 0] / sigma

    np.testing.assert_allclose(scores.score(params, jnp.asarray(x), sigma), -central_difference(energy, x, 1e-6),
                               rtol=1e-7, atol=1e-8)


def test_nasym_of_known_matrices():
    symmetric, rotation = jnp.asarray([[2.0, 1.0], [1.0, -3.0]]), jnp.asarray([[0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(scores.nasym(jnp.stack([symmetric, rotation, symmetric + rotation])),
                               [0.0, 1.0, 2.0 / 17.0], atol=1e-15)


def test_asymmetry_constraint_is_the_antisymmetric_entry_of_sigma_times_the_jacobian(rng):
    params = scores.init_model(jax.random.key(3), "plain", width=16, depth=2)
    x, sigma = jnp.asarray(rng.standard_normal((5, 2))), jnp.asarray(rng.uniform(0.1, 3.0, 5))
    jac = np.asarray(jacobians(params, x, sigma))
    expected = 0.5 * np.asarray(sigma) * (jac[:, 0, 1] - jac[:, 1, 0])
    np.testing.assert_allclose(scores.asymmetry_constraint(params, points=x, sigmas=sigma), expected, rtol=1e-12)


STEPS, BATCH = 100, 64
SMALL = dict(steps=STEPS, chunk=25, batch_size=BATCH, width=16, depth=2)


@pytest.fixture(scope="module")
def spirals():
    return jnp.asarray(toy_2d("two_spirals", 200, seed=0))


@pytest.fixture(scope="module")
def runs(spirals):
    """One small training per method that the tests below compare (the same key: the same initial network)."""
    key = jax.random.key(0)
    return {"plain": scores.train("plain", spirals, key=key, **SMALL),
            "penalty": scores.train("penalty", spirals, key=key, **SMALL),
            "nullspace": scores.train("nullspace", spirals, key=key, num_collocation=12, resample=False, **SMALL)}


def first_batch(key, data):
    """Step 0's batch as train's docstring describes the draws: key -> (init, collocation, steps) keys;
    the steps key -> one key per step -> (pick, noise, collocation) keys."""
    key_init, key_colloc, key_steps = jax.random.split(key, 3)
    key_pick, key_noise, _ = jax.random.split(jax.random.split(key_steps, STEPS)[0], 3)
    batch = scores.noise_batch(key_noise, data[jax.random.randint(key_pick, (BATCH,), 0, data.shape[0])])
    return scores.init_model(key_init, "plain", width=16, depth=2), key_colloc, batch


def test_training_draws_the_documented_batches_and_minimises_dsm_or_the_penalised_dsm(runs, spirals):
    params, key_colloc, batch = first_batch(jax.random.key(0), spirals)
    dsm = float(scores.dsm_loss(params, batch))
    assert runs["plain"].trained.losses[0] == pytest.approx(dsm, rel=1e-12)
    jac = jacobians(params, batch.points, batch.sigmas)  # of s; the constraint is on sigma s
    antisymmetric = 0.5 * (jac - jnp.swapaxes(jac, 1, 2))
    penalty = scores.MU * float(jnp.mean(batch.sigmas**2 * jnp.sum(antisymmetric**2, axis=(1, 2))))
    assert runs["penalty"].trained.losses[0] == pytest.approx(dsm + penalty, rel=1e-10)
    assert runs["plain"].collocation is None
    kept = scores.collocation_pairs(key_colloc, spirals, 12)
    np.testing.assert_array_equal(runs["nullspace"].collocation.points, kept.points)
    assert runs["plain"].trained.projection is None and len(runs["plain"].trained.losses) == STEPS


def test_nullspace_training_makes_the_collocation_points_conservative_and_plain_training_does_not(runs, spirals):
    constrained, plain = runs["nullspace"].trained, runs["plain"].trained
    points, sigmas = runs["nullspace"].collocation.points, runs["nullspace"].collocation.sigmas
    assert np.all(constrained.projection.istop == nullspace.GRAM_DENSE)  # every step projected, dense Gram form
    assert scores.mean_nasym(constrained.params, points, sigmas) < 1e-12
    assert scores.mean_nasym(plain.params, points, sigmas) > 1e-5
    fixed_batch = scores.noise_batch(jax.random.key(7), jnp.tile(spirals, (5, 1)))
    untrained = first_batch(jax.random.key(0), spirals)[0]
    loss = {name: float(scores.dsm_loss(params, fixed_batch))
            for name, params in (("nullspace", constrained.params), ("plain", plain.params), ("init", untrained))}
    assert loss["nullspace"] < 0.95 * loss["init"] and loss["nullspace"] < 1.05 * loss["plain"]  # it still learns


def test_penalty_lowers_the_asymmetry_on_held_out_points(runs):
    held_out = scores.evaluation_pairs(jax.random.key(4), jnp.asarray(toy_2d("two_spirals", 50, seed=1)),
                                       np.geomspace(0.1, 3.0, 3))
    asymmetry = {method: scores.mean_nasym(runs[method].trained.params, held_out.points, held_out.sigmas)
                 for method in ("plain", "penalty")}
    assert asymmetry["penalty"] < 0.5 * asymmetry["plain"]


def test_energy_distance_is_the_square_of_scipys_in_one_dimension(rng):
    a, b = rng.standard_normal(40), rng.standard_normal(30) + 0.5
    embed = lambda u: jnp.asarray(np.stack([u, np.zeros_like(u)], axis=1))  # noqa: E731
    np.testing.assert_allclose(scores.energy_distance(embed(a), embed(b)), scipy.stats.energy_distance(a, b) ** 2,
                               rtol=1e-10)
    assert scores.energy_distance(embed(a), embed(a)) == pytest.approx(0.0, abs=1e-12)


def test_precision_recall_match_a_nearest_neighbour_reference(rng):
    real, fake = rng.standard_normal((60, 2)), rng.standard_normal((50, 2)) * 1.5 + 0.5
    k = 3

    def covered(support, queries):
        radii = NearestNeighbors(n_neighbors=k + 1).fit(support).kneighbors(support)[0][:, k]
        distances = np.linalg.norm(queries[:, None] - support[None], axis=-1)
        return np.mean(np.any(distances <= radii[None], axis=1))

    precision, recall = scores.precision_recall(jnp.asarray(real), jnp.asarray(fake), k=k)
    assert precision == pytest.approx(covered(real, fake), abs=1e-6)
    assert recall == pytest.approx(covered(fake, real), abs=1e-6)
    assert scores.precision_recall(jnp.asarray(real), jnp.asarray(real + 100.0), k=k) == (0.0, 0.0)


def test_langevin_with_the_exact_score_beats_a_wrong_score():
    train = jnp.asarray(toy_2d("eight_gaussians", 300, seed=0))
    held_out = jnp.asarray(toy_2d("eight_gaussians", 300, seed=1))
    schedule = dict(num_levels=8, steps_per_level=8)
    exact = scores.sample_with_exact_score(train, jax.random.key(0), 300, **schedule)
    wrong = scores.annealed_langevin(lambda x, s: -x / (1.0 + s[:, None] ** 2), jax.random.key(0), 300,
                                     start_mean=train.mean(0), start_cov=jnp.cov(train.T), **schedule)
    np.testing.assert_array_equal(exact, scores.sample_with_exact_score(train, jax.random.key(0), 300, **schedule))
    assert scores.energy_distance(exact, held_out) < 0.2 * scores.energy_distance(wrong, held_out)


def test_relative_score_error_is_zero_for_the_exact_score_and_one_for_zero():
    train = jnp.asarray(toy_2d("checkerboard", 100, seed=0))
    grid = np.array([0.1, 1.0])
    pairs = scores.evaluation_pairs(jax.random.key(0), jnp.asarray(toy_2d("checkerboard", 20, seed=1)), grid)
    assert pairs.points.shape == (40, 2) and np.all(np.asarray(pairs.sigmas[:20]) == 0.1)
    exact = lambda x, s: scores.exact_score(x, s, train)  # noqa: E731
    assert scores.relative_score_error(exact, pairs, train, len(grid)) == pytest.approx(0.0, abs=1e-14)
    assert scores.relative_score_error(lambda x, s: 0 * x, pairs, train, len(grid)) == pytest.approx(1.0)


def test_bad_inputs_raise():
    data = jnp.asarray(toy_2d("checkerboard", 50, seed=0))
    with pytest.raises(ValueError, match="unknown method"):
        scores.train("unconstrained", data, key=jax.random.key(0), steps=5)
    with pytest.raises(ValueError, match="unknown method"):
        scores.run("curl-free", 0, scores.SMOKE, data="checkerboard")
    with pytest.raises(ValueError, match="shape"):
        scores.train("energy", data[:, :1], key=jax.random.key(0), steps=5)
    with pytest.raises(ValueError, match="steps"):
        scores.train("energy", data, key=jax.random.key(0), steps=0)
    with pytest.raises(ValueError, match="fewer constraints than parameters"):
        scores.train("nullspace", data, key=jax.random.key(0), steps=5, width=2, depth=1, num_collocation=20)
    with pytest.raises(ValueError, match="chunks"):
        scores.Budget(steps=1000, chunks=3)
    with pytest.raises(ValueError, match="k must be"):
        scores.precision_recall(data, data[:5], k=5)
    with pytest.raises(ValueError, match="noise levels"):
        scores.langevin_levels(1)
    with pytest.raises(ValueError, match="shape"):
        scores.exact_score(data, 1.0, data[:, :1])
