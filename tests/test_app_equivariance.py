"""The C4-invariance application (lsqlab.applications.equivariance) on tiny budgets.

References are independent of the module: numpy's np.rot90 (via lsqlab.data.rotate_c4) for the group
action, explicit numpy loops for the constraint and the invariance error, and the plain model for
what "not invariant" looks like. Two trainings (plain and nullspace) are shared by the tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsqlab import data
from lsqlab.applications import equivariance as eq
from lsqlab.applications import mlp, tables

TINY = eq.Budget(seeds=(0,), hidden=(16, 16), steps=60, eval_every=30, collocation=4, batch=32, dtype="float64")


@pytest.fixture(scope="module")
def prepared():
    return eq.prepare(0, TINY)


@pytest.fixture(scope="module")
def trained(prepared):
    """The tiny budget trained plainly and with the null-space method (fixed collocation images)."""
    return {method: eq.train(method, prepared, TINY, 0) for method in ("plain", "nullspace")}


@pytest.fixture
def params():
    return mlp.init(jax.random.key(3), TINY.sizes, jnp.float64)


def test_rotate_matches_numpy_rot90(rng):
    images = rng.standard_normal((5, 8, 8))
    for k in range(4):
        np.testing.assert_array_equal(np.asarray(eq.rotate(jnp.asarray(images), k)), data.rotate_c4(images, k))
    turns = rng.integers(0, 4, 5)
    np.testing.assert_array_equal(np.asarray(eq.rotate_each(jnp.asarray(images), jnp.asarray(turns))),
                                  data.rotate_c4(images, turns))


def test_constraint_is_the_stack_of_logit_differences_over_three_turns(rng, params):
    images = rng.standard_normal((3, 8, 8))
    logits = lambda x: np.asarray(eq.classifier(params, jnp.asarray(x)))  # noqa: E731
    expected = np.concatenate([(logits(data.rotate_c4(images, k)) - logits(images)).ravel() for k in (1, 2, 3)])
    c = eq.invariance_constraint()(params, inputs=jnp.asarray(images))
    assert c.shape == (eq.num_constraints(3),) == (90,)
    np.testing.assert_allclose(np.asarray(c), expected, rtol=1e-12, atol=1e-12)


def test_invariance_error_matches_a_numpy_loop(rng, params):
    images = rng.standard_normal((6, 8, 8))
    logits = lambda x: np.asarray(eq.classifier(params, jnp.asarray(x)))  # noqa: E731
    upright = logits(images)
    ratios = [np.linalg.norm(logits(data.rotate_c4(images, k))[i] - upright[i]) / np.linalg.norm(upright[i])
              for k in (1, 2, 3) for i in range(6)]
    assert eq.invariance_error(eq.classifier, params, jnp.asarray(images)) == pytest.approx(np.mean(ratios), rel=1e-12)
    assert np.mean(ratios) > 0.1  # an untrained MLP is far from invariant


@pytest.mark.parametrize("dtype, tolerance", [(jnp.float64, 1e-14), (jnp.float32, 1e-6)])
def test_group_average_is_invariant_to_rounding(rng, dtype, tolerance):
    """f_avg(r x) sums the same four terms as f_avg(x) in another order: equal up to rounding."""
    params = mlp.init(jax.random.key(1), TINY.sizes, dtype)
    images = jnp.asarray(rng.uniform(0, 1, (50, 8, 8)), dtype)
    assert eq.invariance_error(eq.group_averaged, params, images) < tolerance
    assert eq.violation(eq.group_averaged, params, images) < 10 * tolerance * float(
        jnp.linalg.norm(eq.group_averaged(params, images)))


@pytest.mark.parametrize("method, resampled", [("nullspace", False), ("nullspace_resampled", True),
                                               ("augmentation", False), ("penalty_resampled", True)])
def test_each_step_meets_the_constraint_on_the_fixed_images_or_the_first_k_of_its_batch(prepared, method,
                                                                                       resampled):
    """A step's batch is drawn by the seeded indices (turned for augmentation); its points, given to the
    loss and as the constraint's ``inputs``, are the collocation images or the batch's first K."""
    source = eq.batches(method, prepared, TINY, 0)
    indices = np.random.default_rng(0).integers(0, len(prepared.x_train), (TINY.steps, TINY.batch))
    np.testing.assert_array_equal(source.per_step["indices"], indices)
    step = jax.tree.map(lambda a: a[7], source.per_step)
    (images, labels, points), args = source.draw(step, source.data)
    expected = np.asarray(prepared.x_train)[indices[7]]
    if method == "augmentation":
        expected = data.rotate_c4(expected, source.per_step["turns"][7])
        assert set(source.per_step["turns"].ravel()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(np.asarray(images), expected)
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(prepared.y_train)[indices[7]])
    np.testing.assert_array_equal(np.asarray(points), expected[: TINY.collocation] if resampled
                                  else np.asarray(prepared.collocation))
    assert args.keys() == {"inputs"} and args["inputs"] is points


def test_nullspace_training_keeps_the_collocation_images_invariant(trained, prepared):
    """||c|| ends far below the plain model's: each step removes half of c (gamma = 0.5) and what stays
    is the second-order drift of the step and the error of the 3-iteration preconditioned Gram-form
    solves (the Nystrom preconditioner here has the full rank m = 120, so they are nearly exact)."""
    plain, constrained = (eq.evaluate(m, 0, trained[m], prepared) for m in ("plain", "nullspace"))
    assert constrained["violation"] < 2e-2 * plain["violation"]
    assert constrained["inv_err_collocation"] < 2e-2 < 0.5 < plain["inv_err_collocation"]
    assert 0 < constrained["solver_iterations"] <= 2 * TINY.gram.maxiter  # two solves per step ("both")
    assert constrained["solver_iterations"] == np.mean(trained["nullspace"].projection.iterations)
    assert np.isnan(plain["solver_iterations"]) and trained["plain"].projection is None
    assert constrained["method"] == "nullspace" and constrained["points"] == "fixed"


def test_invariance_on_four_collocation_images_does_not_carry_over_to_held_out_images(trained, prepared):
    """With K = 4 fixed images the constraint holds there and hardly anywhere else."""
    result = eq.evaluate("nullspace", 0, trained["nullspace"], prepared)
    assert result["inv_err_heldout"] > 10 * result["inv_err_collocation"]


def test_history_has_one_entry_per_evaluation(trained, prepared):
    """After each chunk of eval_every steps: the chunk's mean objective and the progress metrics."""
    run = trained["nullspace"]
    assert [entry["step"] for entry in run.history] == [30, 60]
    assert all(entry.keys() == {"step", "loss", "acc_upright", "inv_err_heldout", "violation"}
               for entry in run.history)
    assert run.history[1]["loss"] == pytest.approx(np.mean(run.losses[30:]), rel=1e-12)
    assert run.history[1]["violation"] == eq.violation(eq.classifier, run.params, prepared.collocation)
    assert run.ms_per_step > 0


def test_group_average_scores_the_same_on_upright_and_rotated_images():
    row = eq.run("group_average", 0, TINY)
    assert row["acc_upright"] == row["acc_rotated"] > 0.3  # better than chance (0.1) after 60 steps
    assert row["inv_err_heldout"] < 1e-12


def test_rotated_test_set_turns_each_image_by_a_seeded_quarter_turn(prepared):
    again = eq.prepare(0, TINY)
    np.testing.assert_array_equal(np.asarray(again.x_rotated), np.asarray(prepared.x_rotated))
    x_test, x_rotated = np.asarray(prepared.x_test), np.asarray(prepared.x_rotated)
    matches = np.stack([np.all(data.rotate_c4(x_test, k) == x_rotated, axis=(1, 2)) for k in range(4)])
    assert matches.any(axis=0).all()  # every image is a quarter turn of its upright original
    turned = matches.argmax(axis=0)
    assert set(turned) == {0, 1, 2, 3}
    np.testing.assert_array_equal(np.asarray(prepared.collocation), np.asarray(prepared.x_train[:4]))


def test_too_many_collocation_images_for_the_parameters_is_refused():
    narrow = eq.Budget(hidden=(4,), collocation=20)  # p = 64*4+4+4*10+10 = 310 < 600
    with pytest.raises(ValueError, match="fewer constraints than parameters"):
        eq.objective("nullspace", narrow)


@pytest.mark.parametrize("changes, message", [
    (dict(dtype="float16"), "dtype"),
    (dict(steps=50, eval_every=30), "multiple of eval_every"),
    (dict(collocation=0), ">= 1"),
    (dict(seeds=()), "at least one seed"),
])
def test_bad_budget_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        eq.Budget(**changes)


def test_bad_method_and_too_many_collocation_images_are_refused():
    with pytest.raises(ValueError, match="unknown method 'rotation_forest'"):
        eq.objective("rotation_forest", TINY)
    with pytest.raises(ValueError, match="exceeds"):
        eq.prepare(0, eq.Budget(collocation=5000))


def test_budget_defaults_are_the_best_settings_of_the_recorded_tuning_grids():
    """penalty_mu, al_rho and al_dual_step: the settings of best rotated accuracy (seed 0) in the recorded
    table equivariance_tuning (``app_equivariance.py --table equivariance_tuning --record``)."""
    grid = tables.read("equivariance_tuning")
    best = {method: max((r for r in grid if r["method"] == method), key=lambda r: r["acc_rotated_mean"])
            for method in eq.TUNING}
    defaults = eq.Budget()
    assert best["penalty"]["penalty_mu"] == best["penalty_resampled"]["penalty_mu"] == defaults.penalty_mu
    assert (best["augmented_lagrangian"]["al_rho"], best["augmented_lagrangian"]["al_dual_step"]) == (
        defaults.al_rho, defaults.al_dual_step)


@pytest.mark.parametrize("name", ["equivariance", "equivariance_tuning"])
def test_recorded_tables_have_every_method_and_render_with_plain_names(name):
    table, summary = eq.TABLES[name], tables.read(name)
    methods = eq.METHODS if name == "equivariance" else tuple(eq.TUNING)
    assert list(dict.fromkeys(row["method"] for row in summary)) == list(methods)
    header = tables.paper(summary, table).splitlines()[0]
    assert "_" not in header and header.count("|") == len(table.by) + len(table.metrics) + 1
