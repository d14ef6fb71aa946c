"""Gram-form solves for the null-space method (lsqlab.multipliers) and the transform that uses them:
z = J^T y with (J J^T) y = r against the dense pseudo-inverse, warm starts that change nothing but
the iteration count, the Nystrom preconditioner against the Gram matrix it approximates."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lsqlab import multipliers, nullspace


def wide_jacobian(rng, m, p, singular_values):
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((p, m)))
    return u @ np.diag(singular_values) @ v.T


def products(J):
    """v -> J v and w -> J^T w on a pytree {"w": (p,)}."""
    J = jnp.asarray(J)
    return (lambda v: J @ v["w"]), (lambda w: {"w": J.T @ w})


@pytest.mark.parametrize("warm", [False, True])
def test_solve_gives_the_minimum_norm_solution_from_any_start(rng, warm):
    m, p = 12, 40
    J = wide_jacobian(rng, m, p, np.logspace(0, -2, m))
    rhs = rng.standard_normal(m)
    y0 = rng.standard_normal(m) * 10 if warm else np.zeros(m)
    jvp, vjp = products(J)
    options = multipliers.GramCG(rtol=1e-12, maxiter=200)
    solution = multipliers.solve(jvp, vjp, jnp.asarray(rhs), jnp.asarray(y0), multipliers.identity(m, jnp.float64),
                                 options)
    np.testing.assert_allclose(np.asarray(solution.z["w"]), np.linalg.pinv(J) @ rhs, rtol=1e-8)
    true_residual = np.linalg.norm(rhs - J @ np.asarray(solution.z["w"]))
    assert float(solution.residual_norm) <= 1e-12 * np.linalg.norm(rhs)
    assert true_residual <= 1e-10 * np.linalg.norm(rhs)  # CG's recurrence stays honest (measured ~1e-13)


def test_warm_start_from_the_answer_takes_no_iteration(rng):
    m, p = 10, 30
    J = wide_jacobian(rng, m, p, np.logspace(0, -1, m))
    rhs = rng.standard_normal(m)
    y = np.linalg.solve(J @ J.T, rhs)
    jvp, vjp = products(J)
    solution = multipliers.solve(jvp, vjp, jnp.asarray(rhs), jnp.asarray(y), multipliers.identity(m, jnp.float64),
                                 multipliers.GramCG(rtol=1e-10))
    assert int(solution.iterations) == 0
    np.testing.assert_allclose(np.asarray(solution.z["w"]), J.T @ y, rtol=1e-13, atol=1e-14)


def test_nystrom_is_exact_on_a_low_rank_gram_matrix_and_cuts_iterations(rng):
    m, p, k = 60, 200, 8
    J = wide_jacobian(rng, m, p, np.concatenate([np.logspace(3, 1.5, k), np.logspace(0, -0.5, m - k)]))
    jvp, vjp = products(J)
    preconditioner = multipliers.nystrom(jvp, vjp, m, k + 4, jax.random.PRNGKey(0), jnp.float64)
    basis, scales = np.asarray(preconditioner.basis), np.asarray(preconditioner.scales)
    np.testing.assert_allclose(basis.T @ basis, np.eye(k + 4), atol=1e-8)
    assert np.all((scales > 0) & (scales <= 1 + 1e-12))
    gram = J @ J.T
    preconditioned_gram = (np.eye(m) + basis @ np.diag(scales - 1) @ basis.T) @ gram
    spread = np.linalg.eigvals(preconditioned_gram).real
    assert np.linalg.cond(gram) > 1e5 and spread.max() / spread.min() < 30  # the k large eigenvalues tamed
    rhs = jnp.asarray(rng.standard_normal(m))
    options = multipliers.GramCG(rtol=1e-10, maxiter=500)
    plain = multipliers.solve(jvp, vjp, rhs, jnp.zeros(m), multipliers.identity(m, jnp.float64), options)
    preconditioned = multipliers.solve(jvp, vjp, rhs, jnp.zeros(m), preconditioner, options)
    np.testing.assert_allclose(np.asarray(preconditioned.z["w"]), np.linalg.pinv(J) @ np.asarray(rhs), rtol=1e-7)
    assert int(preconditioned.iterations) <= int(plain.iterations) // 2  # measured 35 against 144


def test_nystrom_of_rank_zero_is_the_identity():
    identity = multipliers.identity(5, jnp.float64)
    r = jnp.arange(5.0)
    np.testing.assert_array_equal(np.asarray(identity.apply(r)), np.asarray(r))


def curved(params):
    x = params["w"]
    return jnp.stack([x @ x - 1.0, jnp.sum(jnp.sin(x[:6])) - 0.3, x[0] * x[7] - x[3] * x[11]])


def train_curved(params, tx, steps=30):
    """``steps`` jitted steps of ``tx`` on a smooth loss under ``curved``: ((params, state), infos)."""
    loss = lambda p: jnp.sum((p["w"] - 0.5) ** 2) + jnp.sum(jnp.cos(p["w"]))  # noqa: E731

    def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return (optax.apply_updates(p, updates), state), state.info

    return jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, steps))(params)


@pytest.mark.parametrize("rank", [0, 2])
@pytest.mark.parametrize("order", ["both", "after"])
def test_transform_in_gram_form_follows_the_lsmr_transform(rng, order, rank):
    train = partial(train_curved, {"w": jnp.asarray(rng.standard_normal(12))})
    gram = multipliers.GramCG(rtol=1e-12, maxiter=50, rank=rank, refresh_every=7)
    (exact, _), _ = train(nullspace.transform(optax.adam(0.05), curved, gamma=0.5, order=order))
    (cg, _), infos = train(nullspace.transform(optax.adam(0.05), curved, gamma=0.5, order=order, gram=gram))
    np.testing.assert_allclose(np.asarray(cg["w"]), np.asarray(exact["w"]), atol=1e-9)
    assert np.all(np.asarray(infos.linearized_violation) <= 1e-10 * np.maximum(np.asarray(infos.violation), 1))
    ages = np.asarray(infos.preconditioner_age)
    np.testing.assert_array_equal(ages, np.arange(30) % 7 if rank else -np.ones(30))


def test_warm_starts_cut_the_iterations_of_a_training_run(rng):
    """40 constraints sin(A w) = 0.1 on 120 parameters (cond(A) 10), slow SGD: consecutive steps'
    multipliers are close, and starting from them saves most CG iterations (the correction's part of
    y shrinks by 1 - gamma per step, so a large gamma leaves less to save)."""
    A = jnp.asarray(wide_jacobian(rng, 40, 120, np.logspace(0, -1, 40)))
    params = {"w": jnp.asarray(rng.standard_normal(120)) * 0.1}
    loss = lambda p: jnp.sum((p["w"] - 0.5) ** 2)  # noqa: E731
    constraint = lambda p: jnp.sin(A @ p["w"]) - 0.1  # noqa: E731

    def iterations(warm_start):
        tx = nullspace.transform(optax.sgd(0.01), constraint, gamma=0.01, order="after",
                                 gram=multipliers.GramCG(rtol=1e-3, maxiter=200, warm_start=warm_start))

        def step(carry, _):
            p, state = carry
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            return (optax.apply_updates(p, updates), state), state.info.iterations

        return np.asarray(jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, 40)[1])(params))

    cold, warm = iterations(False), iterations(True)
    assert warm[0] == cold[0]
    assert warm[10:].mean() < 0.5 * cold[10:].mean(), (warm, cold)  # measured 7.1 against 24 per step


def test_gram_form_needs_the_constraint_count_when_the_constraint_takes_arguments(rng):
    params = {"w": jnp.asarray(rng.standard_normal(6))}

    def through(p, *, points):
        return p["w"][:2] - points

    tx = nullspace.transform(optax.sgd(0.1), through, gamma=1.0, gram=multipliers.GramCG())
    with pytest.raises(ValueError, match="num_constraints"):
        tx.init(params)
    tx = nullspace.transform(optax.sgd(0.1), through, gamma=1.0, gram=multipliers.GramCG(rtol=1e-12), num_constraints=2)
    points = jnp.asarray([0.5, -1.0])
    step, _ = jax.jit(tx.update)(params, tx.init(params), params, points=points)
    np.testing.assert_allclose(np.asarray(params["w"][:2] + step["w"][:2]), np.asarray(points), atol=1e-12)
    tx = nullspace.transform(optax.sgd(0.1), through, gamma=1.0, gram=multipliers.GramCG(), num_constraints=3)
    with pytest.raises(ValueError, match="holds 3 multipliers"):
        tx.update(params, tx.init(params), params, points=points)


@pytest.mark.parametrize("bad", [dict(rtol=-1.0), dict(maxiter=-1), dict(rank=-2), dict(refresh_every=0)])
def test_bad_gram_options_are_refused(bad):
    with pytest.raises(ValueError, match="must be"):
        nullspace.transform(optax.sgd(0.1), curved, gamma=1.0, gram=multipliers.GramCG(**bad))


@pytest.mark.parametrize("order", ["both", "after"])
def test_transform_in_dense_gram_form_follows_the_lsmr_transform(rng, order):
    train = partial(train_curved, {"w": jnp.asarray(rng.standard_normal(12))})
    (exact, _), _ = train(nullspace.transform(optax.adam(0.05), curved, gamma=0.5, order=order))
    (dense, _), infos = train(nullspace.transform(optax.adam(0.05), curved, gamma=0.5, order=order,
                                                  gram=multipliers.GramDense()))
    np.testing.assert_allclose(np.asarray(dense["w"]), np.asarray(exact["w"]), atol=1e-9)
    assert np.all(np.asarray(infos.istop) == nullspace.GRAM_DENSE)
    assert np.all(np.asarray(infos.linearized_violation) <= 1e-12 * np.maximum(np.asarray(infos.violation), 1))


def test_dense_gram_form_is_the_minimum_norm_least_squares_step_at_any_rank(rng):
    """Redundant constraints (J of rank 3 with 5 rows, c outside the range of J): the pseudo-inverse of
    J J^T gives the LSMR / dense pinv answer, not a NaN."""
    B = rng.standard_normal((5, 3)) @ rng.standard_normal((3, 10))
    J = jnp.asarray(B)
    jvp, vjp = products(B)
    rhs = jnp.asarray(rng.standard_normal(5))
    factor = multipliers.dense_factor(multipliers.rows_by_vjp(vjp, 5, jnp.float64), 5, jnp.float64,
                                     multipliers.GramDense())
    solution = multipliers.dense_solve(factor, rhs)
    np.testing.assert_allclose(np.asarray(solution.z["w"]), np.linalg.pinv(B) @ np.asarray(rhs), atol=1e-12)
    np.testing.assert_allclose(float(solution.residual_norm),
                               np.linalg.norm(np.asarray(rhs) - B @ np.linalg.pinv(B) @ np.asarray(rhs)), rtol=1e-8)
    assert jvp({"w": solution.z["w"]}).shape == (5,) and J.shape == (5, 10)
