"""Selection constraints (lsqlab.constraints.Selection): the closed-form projection against the dense
formula (I - J^+ J) u - gamma J^+ c and against the generic LSMR path on the same c; the mask is data
(state, traced), never a compiled constant."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lsqlab import constraints, nullspace


def tree(rng, dtype=np.float64):
    return {"a": jnp.asarray(rng.standard_normal((4, 5)), dtype), "b": [jnp.asarray(rng.standard_normal(3), dtype)]}


def flat(t) -> np.ndarray:
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(t)])


@pytest.fixture
def problem(rng):
    params, update, target = tree(rng), tree(rng), tree(rng)
    mask = {"a": rng.random((4, 5)) < 0.5, "b": [np.array([True, False, True])]}
    return params, update, target, mask


@pytest.mark.parametrize("with_target", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_closed_form_matches_the_dense_formula_and_the_generic_lsmr_path(problem, gamma, with_target):
    params, update, target, mask = problem
    selection = constraints.fixed(mask, target) if with_target else constraints.sparsity(mask)
    J = np.eye(flat(params).size)[np.flatnonzero(flat(mask))]
    c = J @ (flat(params) - (flat(target) if with_target else 0))
    np.testing.assert_allclose(np.asarray(selection(params)), c, atol=0)
    dense = flat(update) - np.linalg.pinv(J) @ (J @ flat(update) + gamma * c)
    closed, info = nullspace.project(selection, params, update, gamma=gamma)
    generic, generic_info = nullspace.project(lambda p: selection(p), params, update, gamma=gamma)
    np.testing.assert_allclose(flat(closed), dense, atol=1e-15)
    np.testing.assert_allclose(flat(generic), dense, atol=1e-12)
    assert int(info.iterations) == 0 and int(generic_info.iterations) >= 1
    np.testing.assert_allclose(float(info.violation), np.linalg.norm(c), rtol=1e-14)
    assert float(info.linearized_violation) <= 1e-15 * np.linalg.norm(c) + 1e-300


@pytest.mark.parametrize("order", nullspace.ORDERS)
def test_transform_with_a_selection_follows_the_generic_path_over_training(problem, order):
    params, _, target, mask = problem
    loss = lambda p: sum(jnp.sum(jnp.cos(leaf) * leaf**2) for leaf in jax.tree.leaves(p))  # noqa: E731

    def train(constraint):
        tx = nullspace.transform(optax.adam(0.05), constraint, gamma=0.5, order=order)

        def step(carry, _):
            p, state = carry
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            return (optax.apply_updates(p, updates), state), state.info.violation

        return jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, 20))(params)

    selection = constraints.fixed(mask, target)
    (closed, _), closed_violations = train(selection)
    (generic, _), generic_violations = train(lambda p: selection(p))
    np.testing.assert_allclose(flat(closed), flat(generic), atol=1e-9)
    # the generic path's LSMR stops at atol = btol = 1e-10 (relative): agreement to ~1e-10 ||c_0||
    np.testing.assert_allclose(np.asarray(closed_violations), np.asarray(generic_violations), rtol=1e-9, atol=1e-8)
    assert float(jnp.linalg.norm(selection(closed))) < 1e-5 * float(jnp.linalg.norm(selection(params)))


def test_the_mask_is_state_not_a_compiled_constant(problem):
    params, update, _, mask = problem
    tx = nullspace.transform(optax.sgd(1.0), constraints.sparsity(mask), gamma=1.0)
    state = tx.init(params)
    jaxpr = jax.make_jaxpr(lambda u, s, p: tx.update(u, s, p))(update, state, params)
    assert not any(np.size(const) >= 3 for const in jaxpr.consts)  # no mask (or index array) baked in
    flipped = jax.tree.map(jnp.logical_not, state.solver_state[0])
    step, _ = jax.jit(tx.update)(update, state._replace(solver_state=(flipped, None)), params)
    np.testing.assert_allclose(flat(step), np.where(flat(mask), -flat(update), -flat(params)), atol=0)  # sgd(1): -u


def test_a_traced_mask_projects_under_jit(problem):
    params, update, _, mask = problem
    step, info = jax.jit(lambda m: nullspace.project(constraints.sparsity(m), params, update, gamma=1.0))(mask)
    np.testing.assert_allclose(flat(step), np.where(flat(mask), -flat(params), flat(update)), atol=0)
    assert int(info.istop) == nullspace.CLOSED_FORM


def test_selection_errors(problem):
    params, update, _, mask = problem
    with pytest.raises(ValueError, match="selects no parameter"):
        constraints.sparsity(jax.tree.map(np.zeros_like, mask))
    with pytest.raises(ValueError, match="no constraint arguments"):
        nullspace.project(constraints.sparsity(mask), params, update, points=jnp.ones(2))
    with pytest.raises(ValueError, match="shape"):
        nullspace.project(constraints.sparsity(mask), {"a": params["a"][:2], "b": params["b"]},
                          {"a": update["a"][:2], "b": update["b"]})
    with pytest.raises(ValueError, match="different pytrees"):
        constraints.fixed(mask, {"a": params["a"]})
    with pytest.raises(ValueError, match="Selection is projected in closed form"):
        nullspace.transform(optax.sgd(1.0), constraints.sparsity(mask), gamma=1.0, gram=nullspace.multipliers.GramCG())
    with pytest.raises(ValueError, match="the update contains NaN"):
        nullspace.project(constraints.sparsity(mask), params, jax.tree.map(lambda x: x * jnp.nan, update))
