"""The null-space method (lsqlab.nullspace): projection identities, errors, and constrained training.

Known answers: the dense formula (I - J^+ J) u - gamma J^+ c; the smallest eigenvector for a quadratic
on the unit sphere; the KKT solution of a linear-equality QP (dense solve of the KKT system).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lsqlab import nullspace
from lsqlab.lab.problems import equality_qp


def nested(x: np.ndarray) -> dict:
    """12 numbers as a nested dict with leaves of shapes (5,) and (1, 7)."""
    x = jnp.asarray(x)
    return {"layer": {"w": x[:5], "b": x[5:].reshape(1, 7)}}


def as_vector(params: dict) -> jax.Array:
    return jnp.concatenate([jnp.ravel(params["layer"]["w"]), jnp.ravel(params["layer"]["b"])])


def flat(params: dict) -> np.ndarray:
    return np.asarray(as_vector(params))


def curved_constraint(params: dict) -> jax.Array:
    """Three nonlinear constraints on 12 parameters: a sphere, a sine and a bilinear one."""
    x = as_vector(params)
    return jnp.stack([x @ x - 1.0, jnp.sum(jnp.sin(x[:6])) - 0.3, x[0] * x[7] - x[3] * x[11]])


def dense_jacobian(constraint, params) -> np.ndarray:
    return np.asarray(jax.jacfwd(lambda v: constraint(nested(v)))(jnp.asarray(flat(params))))


@pytest.fixture
def point(rng):
    return nested(rng.standard_normal(12)), nested(rng.standard_normal(12))


def test_project_matches_the_dense_formula_and_J_d_equals_minus_gamma_c(point):
    params, update = point
    gamma = 0.3
    projected, info = jax.jit(lambda p, u: nullspace.project(curved_constraint, p, u, gamma=gamma))(params, update)
    J, c = dense_jacobian(curved_constraint, params), np.asarray(curved_constraint(params))
    pinv = np.linalg.pinv(J)
    u = flat(update)
    expected = u - pinv @ (J @ u) - gamma * pinv @ c
    np.testing.assert_allclose(flat(projected), expected, atol=1e-10)
    # J d = -gamma c (full row rank), to solver tolerance, and reported as such.
    np.testing.assert_allclose(J @ flat(projected), -gamma * c, atol=1e-10)
    assert float(info.linearized_violation) < 1e-10
    assert float(info.violation) == pytest.approx(np.linalg.norm(c))
    assert info.reason.startswith("||r|| small") and int(info.iterations) <= 2 * 3 + 10


def test_projection_is_idempotent_and_orthogonal_to_the_normal_space(point, rng):
    params, update = point
    project = jax.jit(lambda u: nullspace.project(curved_constraint, params, u)[0])
    once = project(update)
    np.testing.assert_allclose(flat(project(once)), flat(once), atol=1e-10)
    _, vjp = jax.vjp(curved_constraint, params)
    (normal,) = vjp(jnp.asarray(rng.standard_normal(3)))  # J^T y
    removed = flat(update) - flat(once)  # J^+ J u, in the normal space
    assert abs(flat(once) @ flat(normal)) < 1e-10 * np.linalg.norm(flat(normal))
    assert abs(flat(once) @ removed) < 1e-10 * np.linalg.norm(flat(update)) ** 2


def test_redundant_constraints_give_the_same_step(point):
    params, update = point

    def redundant(p):
        c = curved_constraint(p)
        return jnp.concatenate([c, c[:2], 2 * c[1:2]])  # rank 3 of 6 rows; c stays in range(J)

    solve = jax.jit(
        lambda constraint: nullspace.project(constraint, params, update, gamma=0.5),
        static_argnums=0,
    )
    reference, _ = solve(curved_constraint)
    projected, info = solve(redundant)
    np.testing.assert_allclose(flat(projected), flat(reference), atol=1e-9)
    assert bool(jnp.isin(info.istop, jnp.asarray([1, 2, 4, 5])))
    assert float(info.linearized_violation) < 1e-9


def test_sign_convention_first_order_violation_shrinks_by_one_minus_gamma(rng):
    A, b = rng.standard_normal((4, 12)), rng.standard_normal(4)
    params, update = nested(rng.standard_normal(12)), nested(np.zeros(12))

    def linear(p):
        return jnp.asarray(A) @ as_vector(p) - b

    step, _ = nullspace.project(linear, params, update, gamma=0.25)
    after = linear(nested(flat(params) + flat(step)))
    np.testing.assert_allclose(after, 0.75 * linear(params), atol=1e-10)


@pytest.mark.parametrize(
    "constraint, params, update, message",
    [
        (lambda p: p["a"] - 1.0, {"a": jnp.ones(3)}, {"a": jnp.ones(3)}, "3 entries but there are only 3"),
        (lambda p: jnp.concatenate([p["a"], p["a"]]), {"a": jnp.ones(3)}, {"a": jnp.ones(3)},
         "the constraint has 6 entries but there are only 3 parameters"),
        (lambda p: jnp.log(p["a"][:1] - 2), {"a": jnp.ones(3)}, {"a": jnp.ones(3)},
         r"the constraint value c\(params\) contains NaN or Inf"),
        (lambda p: p["a"][:1], {"a": jnp.ones(3)}, {"a": jnp.ones(3).at[1].set(jnp.nan)},
         "the update contains NaN or Inf"),
        (lambda p: p["a"][:1], {"a": jnp.ones(3)}, {"a": jnp.ones(3).at[0].set(-jnp.inf)},
         "the update contains NaN or Inf"),
        (lambda p: jnp.sqrt(p["a"][:1] - 1), {"a": jnp.ones(3)}, {"a": jnp.zeros(3)},
         r"J u \(the constraint's Jacobian at params applied to the update\) contains NaN or Inf"),
        (lambda p: p["a"][:1], {"a": jnp.ones(3)}, {"b": jnp.ones(3)}, "different pytrees"),
        (lambda p: p["a"][:1], {"a": jnp.ones(3)}, {"a": jnp.ones(4)}, "shape"),
        (lambda p: p["a"][0], {"a": jnp.ones(3)}, {"a": jnp.ones(3)}, "1-D array"),
    ],
)
def test_clear_errors(constraint, params, update, message):
    with pytest.raises(ValueError, match=message):
        nullspace.project(constraint, params, update)


@pytest.mark.parametrize("gamma", [3.0, -0.1, 1.0 + 1e-12, float("nan"), float("inf"), jnp.asarray(2.0)])
def test_gamma_outside_zero_one_is_refused(gamma):
    params = {"a": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\]"):
        nullspace.project(lambda p: p["a"][:1] - 2.0, params, params, gamma=gamma)
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\]"):
        nullspace.transform(optax.sgd(0.1), lambda p: p[:1], gamma=gamma)


def test_gamma_at_the_ends_of_zero_one_and_traced_gamma_are_accepted():
    params = {"a": jnp.ones(3)}
    for gamma in (0.0, 1.0, jnp.asarray(0.5)):
        step, info = nullspace.project(lambda p: p["a"][:1] - 2.0, params, params, gamma=gamma)
        np.testing.assert_allclose(float(step["a"][0]), float(gamma), atol=1e-12)
    step, _ = jax.jit(lambda g: nullspace.project(lambda p: p["a"][:1] - 2.0, params, params, gamma=g))(0.25)
    np.testing.assert_allclose(float(step["a"][0]), 0.25, atol=1e-12)


def test_transform_rejects_bad_options_and_missing_params():
    with pytest.raises(ValueError, match="order"):
        nullspace.transform(optax.sgd(0.1), lambda p: p[:1], gamma=0.5, order="sideways")
    with pytest.raises(TypeError, match="options must be SolverOptions or None, got dict"):
        nullspace.transform(optax.sgd(0.1), lambda p: p[:1], gamma=0.5, options=dict(atol=1e-6))
    tx = nullspace.transform(optax.sgd(0.1), lambda p: p[:1], gamma=0.5)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(jnp.ones(3), tx.init(jnp.ones(3)))


def run_training(tx, loss, params, steps: int):
    """``steps`` jitted steps of ``tx`` on ``loss``; returns the final params and state."""

    def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, steps)[0])
    return run(params)


def test_quadratic_on_the_unit_sphere_converges_to_the_smallest_eigenvector(rng):
    n = 8
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    Q = (U * np.linspace(1.0, 3.0, n)) @ U.T
    loss = lambda p: p["x"] @ Q @ p["x"]  # noqa: E731
    sphere = lambda p: jnp.atleast_1d(p["x"] @ p["x"] - 1.0)  # noqa: E731
    tx = nullspace.transform(optax.sgd(0.05), sphere, gamma=0.5)
    params, state = run_training(tx, loss, {"x": jnp.asarray(rng.standard_normal(n))}, 1000)
    x = np.asarray(params["x"])
    expected = np.linalg.eigh(Q)[1][:, 0]
    assert min(np.linalg.norm(x - expected), np.linalg.norm(x + expected)) < 1e-8
    assert float(state.info.violation) < 1e-12


class QP:
    """The shared equality-constrained QP (``lsqlab.lab.problems.equality_qp``), params a nested dict."""

    def __init__(self, rng):
        self.problem = equality_qp(rng)
        self.A, self.b, self.solution = self.problem.C, self.problem.e, self.problem.solution

    def loss(self, params):
        return self.problem.loss(as_vector(params))

    def constraint(self, params):
        return self.problem.constraint(as_vector(params))

    def errors(self, params) -> tuple[float, float]:
        """(relative distance to the KKT solution, ||A x - b||)."""
        x = flat(params)
        return (
            np.linalg.norm(x - self.solution) / np.linalg.norm(self.solution),
            np.linalg.norm(self.A @ x - self.b),
        )


@pytest.fixture
def qp():
    return QP(np.random.default_rng(1))


def train_qp(qp, order: str, learning_rate: float, steps: int = 4000):
    tx = nullspace.transform(optax.adam(learning_rate), qp.constraint, gamma=0.5, order=order)
    params, state = run_training(tx, qp.loss, nested(np.zeros(12)), steps)
    return qp.errors(params), state


# Measured (Adam, gamma 0.5, 4000 steps from 0, this seed), relative error to KKT / violation ||Ax - b||:
#   lr      "both"             "before"           "after"
#   0.002   6e-9  / 6e-16      6e-9  / 1.4e-9     1.2 / 1e-15
#   0.01    6e-16 / 3e-16      6e-4  / 1.8e-3     2.0 / 1e-15
#   0.05    1e-11 / 6e-16      1.2e-3 / 2.0e-3    2.3 / 1e-15
#   0.2     3e-4  / 8e-16      2.4e-4 / 6.6e-4    2.4 / 2e-15
# Thresholds leave a factor >= 10 of margin.


def test_order_both_reaches_the_kkt_point_with_tiny_violation(qp):
    (error, violation), state = train_qp(qp, "both", 0.01)
    assert error < 1e-8 and violation < 1e-12
    assert float(state.info.linearized_violation) < 1e-12 and int(state.count) == 4000


def test_order_after_stays_feasible_but_converges_to_a_wrong_point(qp):
    (error, violation), _ = train_qp(qp, "after", 0.01)
    assert error > 0.2 and violation < 1e-12


def test_order_before_leaves_a_violation_at_a_large_learning_rate(qp):
    (error, violation), _ = train_qp(qp, "before", 0.05)
    (_, violation_both), _ = train_qp(qp, "both", 0.05)
    assert error < 1e-2  # near the KKT point
    assert violation > 2e-4 and violation_both < 1e-12


def test_orders_coincide_for_sgd_and_the_correction_bypasses_the_base(qp, rng):
    params, grads = nested(rng.standard_normal(12)), nested(rng.standard_normal(12))
    steps = {}
    for order in nullspace.ORDERS:
        tx = nullspace.transform(optax.sgd(0.1), qp.constraint, gamma=0.5, order=order)
        steps[order] = flat(jax.jit(tx.update)(grads, tx.init(params), params)[0])
    np.testing.assert_allclose(steps["before"], steps["both"], atol=1e-12)
    np.testing.assert_allclose(steps["after"], steps["both"], atol=1e-12)
    # A base that outputs nothing: the step is the correction -gamma J^+ c alone, in every order.
    correction = -0.5 * np.linalg.pinv(qp.A) @ np.asarray(qp.constraint(params))
    for order in nullspace.ORDERS:
        tx = nullspace.transform(optax.scale(0.0), qp.constraint, gamma=0.5, order=order)
        step = jax.jit(tx.update)(grads, tx.init(params), params)[0]
        np.testing.assert_allclose(flat(step), correction, atol=1e-12)


def test_constraint_args_reach_the_constraint(rng):
    """constraint(params, **constraint_args), for project and for the transform's update."""
    params, update = {"x": jnp.asarray(rng.standard_normal(6))}, {"x": jnp.asarray(rng.standard_normal(6))}

    def through_points(p, *, points):
        return p["x"][:2] - points

    points = jnp.asarray([0.5, -1.0])
    step, _ = nullspace.project(through_points, params, update, gamma=1.0, points=points)
    np.testing.assert_allclose(params["x"][:2] + step["x"][:2], points, atol=1e-12)
    tx = nullspace.transform(optax.sgd(0.1), through_points, gamma=1.0)
    step, state = jax.jit(tx.update)(update, tx.init(params), params, points=points)
    np.testing.assert_allclose(params["x"][:2] + step["x"][:2], points, atol=1e-12)


def test_non_finite_constraint_under_jit_is_reported_not_raised():
    params = {"a": jnp.ones(3)}
    _, info = jax.jit(lambda p: nullspace.project(lambda q: jnp.log(q["a"][:1] - 2), p, p))(params)
    assert np.isnan(float(info.violation)) and int(info.istop) == 8
