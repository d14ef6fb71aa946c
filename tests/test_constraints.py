"""Constraint builders (lsqlab.constraints) and the comparison methods (lsqlab.baselines).

Each builder: c = 0 on a model that satisfies the constraint by construction, c != 0 on a generic one,
and one null-space step with gamma = 1 makes a model that is linear in its parameters satisfy it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lsqlab import baselines, constraints, nullspace
from lsqlab.lab.problems import equality_qp

ROTATIONS = [lambda xs, k=k: jnp.rot90(xs, k, axes=(1, 2)) for k in (1, 2, 3)]  # C4 without identity


def linear_model(params, xs):
    """(k, 4, 4) images -> (k, 3) outputs, W of shape (3, 4, 4)."""
    return jnp.einsum("oij,kij->ko", params["W"], xs)


def invariant_model(params, xs):
    """Averaged over C4: invariant by construction."""
    return sum(linear_model(params, jnp.rot90(xs, k, axes=(1, 2))) for k in range(4))


def regular_model(params, xs):
    """f(x)_j = <w, rot^j x>: f(rot x) = roll(f(x), -1), equivariant by construction."""
    return jnp.stack([jnp.einsum("ij,kij->k", params["w"], jnp.rot90(xs, j, axes=(1, 2))) for j in range(4)], -1)


@pytest.fixture
def images(rng):
    return jnp.asarray(rng.standard_normal((2, 4, 4)))


def test_equivariance_vanishes_exactly_for_equivariant_models(rng, images):
    identity = [lambda ys: ys] * 3
    invariance = constraints.equivariance(invariant_model, ROTATIONS, identity)
    W = {"W": jnp.asarray(rng.standard_normal((3, 4, 4)))}
    assert invariance(W, inputs=images).shape == (3 * 2 * 3,)
    assert float(jnp.max(jnp.abs(invariance(W, inputs=images)))) < 1e-12
    assert float(jnp.max(jnp.abs(constraints.equivariance(linear_model, ROTATIONS, identity)(W, inputs=images)))) > 0.1
    shifts = [lambda ys, k=k: jnp.roll(ys, -k, axis=-1) for k in (1, 2, 3)]
    equivariance = constraints.equivariance(regular_model, ROTATIONS, shifts)
    w = {"w": jnp.asarray(rng.standard_normal((4, 4)))}
    assert float(jnp.max(jnp.abs(equivariance(w, inputs=images)))) < 1e-12
    wrong_action = constraints.equivariance(regular_model, ROTATIONS, identity)
    assert float(jnp.max(jnp.abs(wrong_action(w, inputs=images)))) > 0.1


def test_equivariance_projection_makes_a_linear_model_invariant(rng, images):
    invariance = constraints.equivariance(linear_model, ROTATIONS, [lambda ys: ys] * 3)
    W = {"W": jnp.asarray(rng.standard_normal((3, 4, 4)))}
    step, info = nullspace.project(invariance, W, jax.tree.map(jnp.zeros_like, W), gamma=1.0, inputs=images)
    W = optax.apply_updates(W, step)
    assert float(jnp.max(jnp.abs(invariance(W, inputs=images)))) < 1e-10
    assert int(info.istop) in (1, 2, 4, 5)


def test_equivariance_needs_one_output_action_per_input_action():
    with pytest.raises(ValueError, match="one output action per input action"):
        constraints.equivariance(linear_model, ROTATIONS, [lambda ys: ys])


def sparse_setup(rng):
    params = {"dense": {"w": jnp.asarray(rng.standard_normal((6, 5))), "b": jnp.asarray(rng.standard_normal(5))}}
    mask = {"dense": {"w": rng.random((6, 5)) < 0.4, "b": np.array([True, False, False, False, True])}}
    return params, mask


def test_sparsity_projection_zeroes_the_mask_at_once_and_training_keeps_it(rng):
    params, mask = sparse_setup(rng)
    zero_on_mask = constraints.sparsity(mask)
    assert zero_on_mask(params).shape == (int(mask["dense"]["w"].sum()) + 2,)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), params)
    step, info = nullspace.project(zero_on_mask, params, grads, gamma=1.0)
    assert int(info.iterations) <= 2  # J is a selection: J^+ = J^T
    moved = optax.apply_updates(params, step)
    assert float(jnp.max(jnp.abs(zero_on_mask(moved)))) < 1e-14  # measured 1.2e-15
    free = ~mask["dense"]["w"]
    np.testing.assert_allclose(np.asarray(step["dense"]["w"])[free], np.asarray(grads["dense"]["w"])[free])

    loss = lambda p: jnp.sum(jnp.sin(p["dense"]["w"]) ** 2) + jnp.sum((p["dense"]["b"] - 1.0) ** 2)  # noqa: E731
    tx = nullspace.transform(optax.adam(0.05), zero_on_mask, gamma=1.0)

    def step_fn(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    (trained, _), _ = jax.jit(lambda p: jax.lax.scan(step_fn, (p, tx.init(p)), None, 50))(moved)
    assert float(jnp.max(jnp.abs(zero_on_mask(trained)))) < 1e-14
    assert float(loss(trained)) < 0.5 * float(loss(moved))


def test_sparsity_rejects_an_empty_mask_and_other_pytrees(rng):
    params, mask = sparse_setup(rng)
    with pytest.raises(ValueError, match="selects no parameter"):
        constraints.sparsity(jax.tree.map(np.zeros_like, mask))
    with pytest.raises(ValueError, match="different pytrees"):
        constraints.sparsity(mask)({"w": params["dense"]["w"]})


def energy_field(params, x):
    """s = -grad E for a small two-layer energy: a conservative field."""
    energy = lambda y: jnp.sum(jnp.tanh(params["W"] @ y + params["b"]) * params["v"])  # noqa: E731
    return -jax.grad(energy)(x)


def rotation_field(params, x):
    """s(x) = a (-x_1, x_0, 0) + b x: curl 2a in the (0, 1) plane, not conservative for a != 0."""
    return params["a"] * jnp.stack([-x[1], x[0], 0.0 * x[2]]) + params["b"] * x


@pytest.fixture
def points(rng):
    return jnp.asarray(rng.standard_normal((5, 3)))


def test_conservativeness_exact_variant(rng, points):
    energy_params = {
        "W": jnp.asarray(rng.standard_normal((8, 3))), "b": jnp.asarray(rng.standard_normal(8)),
        "v": jnp.asarray(rng.standard_normal(8)),
    }
    antisymmetry = constraints.conservativeness(energy_field)
    assert antisymmetry(energy_params, points=points).shape == (5 * 3,)
    assert float(jnp.max(jnp.abs(antisymmetry(energy_params, points=points)))) < 1e-12
    c = constraints.conservativeness(rotation_field)({"a": 0.7, "b": 2.0}, points=points)
    # (D - D^T)/2 has entries (0,1) = -a, (0,2) = (1,2) = 0 at every point.
    np.testing.assert_allclose(c.reshape(5, 3), np.tile([-0.7, 0.0, 0.0], (5, 1)), atol=1e-14)


def test_conservativeness_projection_symmetrises_a_linear_field(rng, points):
    """s(x) = M x: c = 0 iff M is symmetric; two points repeat the same rows (rank-deficient J)."""
    antisymmetry = constraints.conservativeness(lambda p, x: p["M"] @ x)
    params = {"M": jnp.asarray(rng.standard_normal((3, 3)))}
    step, _ = nullspace.project(
        antisymmetry, params, {"M": jnp.zeros((3, 3))}, gamma=1.0, points=points[:2]
    )
    M = np.asarray(params["M"] + step["M"])
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    np.testing.assert_allclose(M, 0.5 * (params["M"] + params["M"].T), atol=1e-12)  # the nearest symmetric M


class QP:
    """The shared equality-constrained QP (``lsqlab.lab.problems.equality_qp``) on parameters {"x": x}."""

    def __init__(self, rng):
        self.problem = equality_qp(rng)
        self.solution = self.problem.solution

    def loss(self, params):
        return self.problem.loss(params["x"])

    def constraint(self, params):
        return self.problem.constraint(params["x"])


def train(tx, loss, params, steps):
    def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    return jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, steps)[0])(params)


# Measured (lr 0.01, 3000 steps from x = 0, where ||c|| = 2.2): penalty (Adam) mu = 10, 100, 1000:
# violation 9.6e-2, 9.0e-3, 7.4e-4 (like 1/mu), distance to KKT 0.015, 0.36, 0.85 (ill-conditioning);
# augmented Lagrangian (SGD) rho = 1: violation 1.0e-5, distance to KKT 9.6e-4. With Adam as the primal
# optimiser the same primal-dual iteration did not converge (violation ~10 for rho = 0.01 .. 10).


def test_penalty_and_augmented_lagrangian_reduce_the_violation_on_the_qp():
    qp = QP(np.random.default_rng(1))
    start = {"x": jnp.zeros(12)}
    initial = float(jnp.linalg.norm(qp.constraint(start)))
    penalized = baselines.quadratic_penalty(qp.loss, qp.constraint, mu=100.0)
    assert float(penalized(start)) == pytest.approx(0.5 * 100.0 * initial**2)
    penalty_params, _ = train(optax.adam(0.01), penalized, start, 3000)
    penalty_violation = float(jnp.linalg.norm(qp.constraint(penalty_params)))
    assert penalty_violation < 0.05 * initial

    tx = baselines.augmented_lagrangian(optax.sgd(0.01), qp.constraint, rho=1.0, num_constraints=4)
    al_params, state = train(tx, qp.loss, start, 3000)
    al_violation = float(jnp.linalg.norm(qp.constraint(al_params)))
    assert al_violation < 1e-4 and al_violation < 0.1 * penalty_violation
    assert np.linalg.norm(al_params["x"] - qp.solution) < 1e-2 * np.linalg.norm(qp.solution)
    assert state.multipliers.shape == (4,)


@pytest.mark.parametrize("dual_step", [None, 0.1])
def test_augmented_lagrangian_dual_step_sets_the_growth_of_the_multipliers(dual_step):
    """lambda_1 = eta c(x_0), lambda_2 = eta (c(x_0) + c(x_1)) with eta = dual_step (default rho = 1);
    the first primal step sees lambda_0 = 0 and so does not depend on eta."""
    qp = QP(np.random.default_rng(1))
    eta = 1.0 if dual_step is None else dual_step
    tx = baselines.augmented_lagrangian(optax.sgd(0.01), qp.constraint, rho=1.0, num_constraints=4,
                                        dual_step=dual_step)
    x0 = {"x": jnp.zeros(12)}
    update, state = tx.update(jax.grad(qp.loss)(x0), tx.init(x0), x0)
    x1 = optax.apply_updates(x0, update)
    c0 = np.asarray(qp.problem.C @ np.zeros(12) - qp.problem.e)  # c(x) = C x - e, written out
    np.testing.assert_allclose(state.multipliers, eta * c0, rtol=1e-12)
    expected_x1 = -0.01 * (qp.problem.q + qp.problem.C.T @ c0)  # grad L(0) = q, J^T (0 + rho c0)
    np.testing.assert_allclose(x1["x"], expected_x1, rtol=1e-12)
    _, state = tx.update(jax.grad(qp.loss)(x1), state, x1)
    c1 = qp.problem.C @ np.asarray(x1["x"]) - qp.problem.e
    np.testing.assert_allclose(state.multipliers, eta * (c0 + c1), rtol=1e-12)


def test_augmented_lagrangian_with_a_smaller_dual_step_reaches_the_kkt_point():
    """rho = 1, eta = 0.1 (SGD): x and lambda reach the dense KKT solution [[Q, C^T], [C, 0]] [x; lambda] =
    [-q; e]. Measured after 3000 steps: relative errors 9.6e-4 (x) and 2.1e-4 (lambda), ||c|| 4.6e-6."""
    qp = QP(np.random.default_rng(1))
    Q, C = qp.problem.Q, qp.problem.C
    kkt = np.block([[Q, C.T], [C, np.zeros((4, 4))]])
    multipliers = np.linalg.solve(kkt, np.concatenate([-qp.problem.q, qp.problem.e]))[12:]
    tx = baselines.augmented_lagrangian(optax.sgd(0.01), qp.constraint, rho=1.0, num_constraints=4, dual_step=0.1)
    params, state = train(tx, qp.loss, {"x": jnp.zeros(12)}, 3000)
    assert np.linalg.norm(params["x"] - qp.solution) < 1e-2 * np.linalg.norm(qp.solution)
    assert np.linalg.norm(state.multipliers - multipliers) < 1e-2 * np.linalg.norm(multipliers)
    assert float(jnp.linalg.norm(qp.constraint(params))) < 1e-4


def test_baselines_reject_bad_options():
    with pytest.raises(ValueError, match="mu"):
        baselines.quadratic_penalty(lambda p: 0.0, lambda p: p, mu=-1.0)
    with pytest.raises(ValueError, match="rho"):
        baselines.augmented_lagrangian(optax.sgd(0.1), lambda p: p, rho=0.0, num_constraints=1)
    with pytest.raises(ValueError, match="dual_step"):
        baselines.augmented_lagrangian(optax.sgd(0.1), lambda p: p, rho=1.0, num_constraints=1, dual_step=0.0)
    tx = baselines.augmented_lagrangian(optax.sgd(0.1), lambda p: p[:2], rho=1.0, num_constraints=3)
    with pytest.raises(ValueError, match="expected"):
        tx.update(jnp.ones(4), tx.init(jnp.ones(4)), jnp.ones(4))


def test_pointwise_jacobian_rows_match_the_full_jacobian(rng, points):
    """Rows formed point by point (the GramDense shortcut) equal jax.jacrev of the whole constraint."""
    params = {"W": jnp.asarray(rng.standard_normal((3, 3))), "v": jnp.asarray(rng.standard_normal(3))}
    field = lambda p, x: jnp.tanh(p["W"] @ x) * p["v"] + x**2  # noqa: E731
    constraint = constraints.conservativeness(field)
    full = jax.jacrev(lambda p: constraint(p, points=points))(params)
    rows = constraint.jacobian_rows(params, points=points)
    for name in params:
        np.testing.assert_allclose(np.asarray(rows[name]), np.asarray(full[name]), atol=1e-14)
    assert constraint(params, points=points).shape == (points.shape[0] * 3,)


def test_pointwise_rows_of_one_entry_per_point(rng, points):
    """2-D fields: one entry per point, rows by a gradient per point, the same as jax.jacrev."""
    params = {"W": jnp.asarray(rng.standard_normal((2, 2)))}
    constraint = constraints.conservativeness(lambda p, x: jnp.tanh(p["W"] @ x) + x**3)
    flat_points = points[:, :2]
    full = jax.jacrev(lambda p: constraint(p, points=flat_points))(params)
    rows = constraint.jacobian_rows(params, points=flat_points)
    np.testing.assert_allclose(np.asarray(rows["W"]), np.asarray(full["W"]), atol=1e-14)
