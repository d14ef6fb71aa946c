"""Weight sparsity as a constraint (lsqlab.applications.sparsity) and its scale script.

References: the dense projector (I - J^+ J) u - J^+ c with J the selection matrix built explicitly and
numpy's pinv; the closed-form masked step (hard_mask); exact counts of zeros; the geometric shrinking
(1 - gamma)^steps of nullspace_gradual.
"""

import importlib.util
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lsqlab import constraints, nullspace
from lsqlab.applications import mlp, sparsity, training

ROOT = Path(__file__).resolve().parent.parent
SCALE = ROOT / "benchmarks" / "scale_sparsity.py"
# The table's code path on a tiny budget: one seed, one level, one candidate strength each (no selection).
TINY = sparsity.Budget(seeds=(0,), levels=(0.8,), sizes=(64, 16, 10), pretrain_steps=100, steps=20, chunks=5,
                       l1_strengths=(1e-3,), penalty_strengths=(10.0,))


def small_mlp(seed: int = 0, sizes=(8, 6, 5, 3)):
    return mlp.init(jax.random.PRNGKey(seed), sizes, jnp.float64)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tree)])


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


def test_adam_through_the_projection_in_every_order_takes_the_hard_mask_steps(rng):
    params = small_mlp(1)
    mask = sparsity.magnitude_mask(params, 0.7)
    adam = optax.adam(1e-2)
    gradients = [jax.tree.map(lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape)), params) for _ in range(3)]

    def steps(tx):
        theta, state = params, tx.init(params)
        for gradient in gradients:
            update, state = tx.update(gradient, state, theta)
            theta = optax.apply_updates(theta, update)
        return theta, state

    closed, _ = steps(sparsity.hard_mask(adam, mask))
    assert sparsity.mask_violation(closed, mask) == 0.0
    # P is diagonal and commutes with Adam, and in closed form P g is exactly 0 on the mask (Adam's
    # moments stay 0 there): the three orders take the hard mask's steps (to the last bits) and the mask
    # holds exactly, with no solver iteration.
    for order in nullspace.ORDERS:
        theta, state = steps(sparsity.nullspace_optimizer(adam, mask, order=order))
        np.testing.assert_allclose(flat(theta), flat(closed), rtol=1e-14, atol=1e-15, err_msg=order)
        assert sparsity.mask_violation(theta, mask) == 0.0, order
        info = training.projection_info(state)
        assert int(info.iterations) == 0 and int(info.istop) == -2, order  # closed form
    # (For a J that mixes coordinates the orders differ in earnest: notebook 05 shows it for brightness.)
    np.testing.assert_allclose(np.asarray(sparsity.brightness_invariance(params)),
                               np.asarray(params[0]["w"]).sum(axis=0))


@pytest.fixture(scope="module")
def table():
    """The table on TINY, pretraining counted: (rows by method, dense model of seed 0, dense_model's cache info)."""
    sparsity.dense_model.cache_clear()
    rows = sparsity.TABLES["sparsity"].rows(TINY)
    return {row["method"]: row for row in rows}, sparsity.dense_model(0, TINY)[1], sparsity.dense_model.cache_info()


def test_the_table_pretrains_once_per_seed_and_every_method_reaches_the_level(table):
    rows, dense, cache = table
    assert list(rows) == list(sparsity.METHODS) and all(row["seed"] == 0 for row in rows.values())
    assert cache.misses == 1  # seed 0's dense model, shared by every method
    sizes = [64 * 16, 16 * 10]
    left = 1 - sum(round(0.8 * n) for n in sizes) / sum(sizes)
    assert rows["plain"]["sparsity"] == 0.0 and rows["plain"]["surviving"] == 1.0
    for method in sparsity.METHODS[1:]:
        assert rows[method]["sparsity"] == 0.8 and rows[method]["surviving"] == pytest.approx(left), method
        assert 0.0 <= rows[method]["test_error"] <= 1.0 and rows[method]["ms_per_step"] > 0, method
        assert rows[method]["overhead"] == rows[method]["ms_per_step"] / rows["plain"]["ms_per_step"]
    assert rows["plain"]["overhead"] == 1.0
    assert rows["l1"]["strength"] == 1e-3 and rows["penalty"]["strength"] == 10.0
    # nullspace (gamma = 1) and prune + retraining are one algorithm: the same errors, mask exactly 0.
    for method in ("nullspace", "prune"):
        assert rows[method]["violation_before_finish"] == 0.0
        assert rows[method]["error_before_finish"] == rows[method]["test_error"] == rows["prune"]["test_error"]
    # gamma = 1 - 1e-4^(1/steps): every masked weight is 1e-4 times its dense value before the finish.
    shrunk = sparsity.mask_violation(dense, sparsity.magnitude_mask(dense, 0.8)) * sparsity.GRADUAL_SHRINK
    assert rows["nullspace_gradual"]["violation_before_finish"] == pytest.approx(shrunk, rel=1e-5)  # float32
    assert rows["penalty"]["violation_before_finish"] > 0  # a penalty only pulls towards the mask
    assert math.isnan(rows["l1"]["violation_before_finish"]) and math.isnan(rows["plain"]["violation_before_finish"])


def test_bad_inputs_raise():
    params = small_mlp()
    for level in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sparsity must be in"):
            sparsity.magnitude_mask(params, level)
    mask = sparsity.magnitude_mask(params, 0.5)
    with pytest.raises(ValueError, match="different pytrees"):
        sparsity.prune(params[:2], mask)
    with pytest.raises(ValueError, match="method must be one of"):
        sparsity.setting("lottery", params, 0.5, TINY)
    with pytest.raises(ValueError, match="needs strength > 0"):
        sparsity.setting("l1", params, 0.5, TINY)
    with pytest.raises(ValueError, match="plain trains the dense model"):
        sparsity.run("plain", 0, TINY, sparsity=0.5)
    with pytest.raises(ValueError, match="chunks must divide"):
        sparsity.Budget(steps=1001)
    with pytest.raises(ValueError, match="batch_size"):
        sparsity.minibatches(np.zeros((4, 8)), np.zeros(4, int), steps=1, batch_size=5, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="needs params"):
        sgd = optax.sgd(1.0)
        sparsity.hard_mask(sgd, mask).update(params, sgd.init(params))


def test_scale_script_small_size_runs_in_float32_and_writes_its_results(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("scale_sparsity", SCALE)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with jax.enable_x64(False):  # as the script runs on its own
        script.main(["--size", "small", "--steps", "10", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "scale_sparsity_small.json").read_text())
    assert (tmp_path / "scale_sparsity_small.md").read_text().startswith("# Sparsity-constrained training")
    assert report["machine"]["x64"] is False
    assert report["masked_fraction_of_weights"] == pytest.approx(0.9, abs=1e-3)
    assert report["constraint_max_end"] < 1e-6  # float32: masked weights at rounding level
    assert report["nullspace"]["solver_iterations_per_step"] == [0]  # a Selection: closed form, no solve
    assert report["nullspace"]["solver_istop"] == [-2] and report["plain"]["solver_istop"] == [-1]
    assert report["relative_difference_nullspace_vs_mask"] < 1e-5
    for phase in ("plain", "mask", "nullspace"):
        assert report[phase]["ms_per_step"] > 0 and len(report[phase]["ms_per_step_chunks"]) == 2
    # Refused before anything is built: a level outside [0, 1), steps that are not whole chunks.
    for argv, message in ((["--sparsity", "1.0"], "sparsity must be in [0, 1)"),
                          (["--steps", "7"], "--steps must be a positive multiple of 5")):
        with pytest.raises(SystemExit):
            script.main([*argv, "--out", str(tmp_path)])
        assert message in capsys.readouterr().err
