"""Weight sparsity as a constraint (lsqlab.applications.sparsity) and its scale script.

References: the dense projector (I - J^+ J) u - J^+ c with J the selection matrix built explicitly and
numpy's pinv; the closed-form masked step (hard_mask); exact counts of zeros.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lsqlab import constraints, nullspace
from lsqlab.applications import mlp, sparsity
from lsqlab.data import Split

ROOT = Path(__file__).resolve().parent.parent


def small_mlp(seed: int = 0, sizes=(8, 6, 5, 3)):
    return mlp.init(jax.random.PRNGKey(seed), sizes, jnp.float64)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tree)])


def blobs(seed: int, n: int = 240, dim: int = 8, classes: int = 3) -> Split:
    """Three well-separated Gaussian blobs in R^8, split 3:1."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((classes, dim))
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.standard_normal((n, dim))
    cut = 3 * n // 4
    return Split(x[:cut], y[:cut], x[cut:], y[cut:])


@pytest.mark.parametrize("level", [0.0, 0.5, 0.8, 0.95])
def test_magnitude_mask_prunes_the_requested_fraction_of_each_weight_matrix_by_magnitude(level):
    params = small_mlp()
    mask = sparsity.magnitude_mask(params, level)
    for layer, layer_mask in zip(params, mask):
        assert not layer_mask["b"].any()  # biases are kept
        w, m = np.abs(np.asarray(layer["w"])), layer_mask["w"]
        assert m.sum() == round(level * w.size)
        if 0 < m.sum() < w.size:
            assert w[m].max() <= w[~m].min()  # the pruned ones are the smallest
    pruned = sparsity.prune(params, mask)
    expected = sum(round(level * layer["w"].size) for layer in params) / sum(layer["w"].size for layer in params)
    assert sparsity.surviving_fraction(pruned) == pytest.approx(1 - expected)
    assert sparsity.mask_violation(pruned, mask) == 0.0


def test_the_projection_zeroes_exactly_the_masked_entries_as_the_dense_formula_does(rng):
    params = small_mlp()
    mask = sparsity.magnitude_mask(params, 0.6)
    update = jax.tree.map(lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape)), params)
    selected = np.flatnonzero(flat(mask))
    J = np.eye(flat(params).size)[selected]  # c = J theta
    pinv = np.linalg.pinv(J)
    u, theta = flat(update), flat(params)
    for gamma in (0.0, 1.0):
        step, info = nullspace.project(constraints.sparsity(mask), params, update, gamma=gamma)
        dense = u - pinv @ (J @ u) - gamma * pinv @ (J @ theta)
        np.testing.assert_allclose(flat(step), dense, atol=1e-14)
        assert int(info.iterations) == 0 and info.reason.startswith("closed form")  # no solve
    # ... which is the masked update: free entries pass unchanged, masked ones go to -theta.
    keep = ~flat(mask)
    np.testing.assert_array_equal(flat(step)[keep], u[keep])
    np.testing.assert_allclose(flat(step)[~keep], -theta[~keep], atol=1e-15)
    # The closed form (hard_mask) with SGD (lr 1: the step is -g for a gradient g = u) gives the same.
    sgd = optax.sgd(1.0)
    closed, _ = sparsity.hard_mask(sgd, mask).update(update, sgd.init(params), params)
    descent = jax.tree.map(jnp.negative, update)
    projected_descent, _ = nullspace.project(constraints.sparsity(mask), params, descent, gamma=1.0)
    np.testing.assert_array_equal(flat(closed), np.where(keep, -u, -theta))
    np.testing.assert_allclose(flat(closed), flat(projected_descent), atol=1e-15)


@pytest.fixture(scope="module")
def dense_blobs():
    """Blobs and a dense MLP trained on them (test error < 5%)."""
    data = blobs(0)
    dense = sparsity.train(sparsity.cross_entropy, optax.adam(1e-2), small_mlp(1), data.x_train, data.y_train,
                           steps=150, batch_size=32, key=jax.random.PRNGKey(2)).params
    return data, dense


def test_nullspace_training_keeps_the_mask_at_zero_and_matches_hard_mask_retraining(dense_blobs):
    data, dense = dense_blobs
    assert sparsity.error_rate(dense, data.x_test, data.y_test) < 0.05
    mask = sparsity.magnitude_mask(dense, 0.8)
    key = jax.random.PRNGKey(3)
    adam = optax.adam(1e-2)
    constrained = sparsity.train(sparsity.cross_entropy, sparsity.nullspace_optimizer(adam, mask), dense,
                                 data.x_train, data.y_train, steps=100, batch_size=32, key=key).params
    closed = sparsity.train(sparsity.cross_entropy, sparsity.hard_mask(adam, mask), dense,
                            data.x_train, data.y_train, steps=100, batch_size=32, key=key).params
    assert sparsity.mask_violation(constrained, mask) < 1e-13  # float64; exactly 0 for the closed form
    assert sparsity.mask_violation(closed, mask) == 0.0
    np.testing.assert_allclose(flat(constrained), flat(closed), atol=1e-10)  # the same trajectory
    assert sparsity.error_rate(constrained, data.x_test, data.y_test) < 0.1
    assert sparsity.surviving_fraction(sparsity.prune(constrained, mask)) == pytest.approx(
        1 - sum(m["w"].sum() for m in mask) / sum(m["w"].size for m in mask))


def test_the_orders_of_projection_and_adam_coincide_for_a_mask():
    data = blobs(2)
    params = small_mlp(3)
    key = jax.random.PRNGKey(4)
    adam = optax.adam(1e-2)
    mask = sparsity.magnitude_mask(params, 0.7)

    def final(tx):
        return sparsity.train(sparsity.cross_entropy, tx, params, data.x_train, data.y_train,
                              steps=40, batch_size=32, key=key).params

    masked = {order: final(sparsity.nullspace_optimizer(adam, mask, order=order)) for order in nullspace.ORDERS}
    # P is diagonal and commutes with Adam, and in closed form P g is exactly 0 on the mask (Adam's
    # moments stay 0 there): the three orders take the same steps (up to XLA's fusion, last bits) and
    # the mask holds exactly.
    for order in ("before", "after"):
        np.testing.assert_allclose(flat(masked[order]), flat(masked["both"]), rtol=1e-13, atol=1e-15)
    assert all(sparsity.mask_violation(theta, mask) == 0 for theta in masked.values())
    # (For a J that mixes coordinates the orders differ in earnest: notebook 05 shows it for brightness.)
    np.testing.assert_allclose(np.asarray(sparsity.brightness_invariance(params)),
                               np.asarray(params[0]["w"]).sum(axis=0))


def test_evaluate_prunes_to_the_target_level_after_gradual_l1_and_penalty_training(dense_blobs):
    data, dense = dense_blobs
    surviving = 1 - sum(round(0.8 * n) for n in (8 * 6, 6 * 5, 5 * 3)) / (8 * 6 + 6 * 5 + 5 * 3)
    rows = {method: sparsity.evaluate(method, dense, 0.8, data, steps=30, batch_size=32, learning_rate=1e-2,
                                      key=jax.random.PRNGKey(1), strength=strength)
            for method, strength in (("nullspace_gradual", 0.0), ("l1", 1e-3), ("penalty", 10.0))}
    for method, row in rows.items():
        assert row["surviving"] == pytest.approx(surviving), method
        assert 0.0 <= row["test_error"] <= 1.0 and row["ms_per_step"] > 0, method
    # gamma = 1 - 1e-4^(1/steps): every masked weight is exactly 1e-4 times its dense value before the finish.
    shrunk = sparsity.mask_violation(dense, sparsity.magnitude_mask(dense, 0.8)) * sparsity.GRADUAL_SHRINK
    assert rows["nullspace_gradual"]["violation_before_finish"] == pytest.approx(shrunk, rel=1e-8)
    assert rows["penalty"]["violation_before_finish"] > 0.1  # 30 Adam steps do not reach the mask
    assert np.isnan(rows["l1"]["violation_before_finish"])


def test_bad_inputs_raise():
    params = small_mlp()
    for level in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sparsity must be in"):
            sparsity.magnitude_mask(params, level)
    mask = sparsity.magnitude_mask(params, 0.5)
    with pytest.raises(ValueError, match="different pytrees"):
        sparsity.prune(params[:2], mask)
    with pytest.raises(ValueError, match="method must be one of"):
        sparsity.setting("lottery", params, 0.5, learning_rate=1e-3, steps=1)
    with pytest.raises(ValueError, match="needs strength > 0"):
        sparsity.setting("l1", params, 0.5, learning_rate=1e-3, steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        sparsity.train(sparsity.cross_entropy, optax.adam(1e-3), params, np.zeros((4, 8)), np.zeros(4, int),
                       steps=1, batch_size=5, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="needs params"):
        sgd = optax.sgd(1.0)
        sparsity.hard_mask(sgd, mask).update(params, sgd.init(params))


def test_scale_script_small_size_runs_in_float32_and_writes_its_results(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_ENABLE_X64="0")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale_sparsity.py"), "--size", "small", "--steps", "4",
         "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "scale_sparsity_small.json").read_text())
    assert (tmp_path / "scale_sparsity_small.md").read_text().startswith("# Sparsity-constrained training")
    assert report["machine"]["x64"] is False
    assert report["masked_fraction_of_weights"] == pytest.approx(0.9, abs=1e-3)
    assert report["constraint_max_end"] < 1e-6  # float32: masked weights at rounding level
    assert report["nullspace"]["solver_iterations_per_step"] == [0]  # a Selection: closed form, no solve
    assert report["relative_difference_nullspace_vs_mask"] < 1e-5
    for phase in ("plain", "mask", "nullspace"):
        assert report[phase]["ms_per_step"] > 0
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_sparsity.py"), "--sparsity", "1.0",
                              "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "sparsity must be in [0, 1)" in refused.stderr
