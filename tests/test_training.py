"""The shared training loop against a plain Python loop of the same optax steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lsqlab import nullspace
from lsqlab.applications import training

jax.config.update("jax_enable_x64", True)

X = jax.random.normal(jax.random.key(0), (40, 3))
Y = X @ jnp.array([1.0, -2.0, 0.5]) + 0.1


def squared_error(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def draw(index, data):
    x, y = data
    rows = jax.lax.dynamic_slice_in_dim(jnp.arange(x.shape[0]), 4 * index, 4)
    return (x[rows], y[rows]), {}


def start():
    return {"w": jnp.zeros(3), "b": jnp.zeros(())}


def python_loop(tx, params, steps, constraint_args=None):
    state, losses = tx.init(params), []
    for t in range(steps):
        batch, _ = draw(t, (X, Y))
        value, grads = jax.value_and_grad(squared_error)(params, batch)
        updates, state = tx.update(grads, state, params, **(constraint_args or {}))
        params = optax.apply_updates(params, updates)
        losses.append(float(value))
    return params, np.array(losses)


@pytest.mark.parametrize("chunk", [None, 2, 5])
def test_same_steps_as_a_python_loop(chunk):
    batches = training.Batches(jnp.arange(10), draw, (X, Y))
    seen = []
    trained = training.train(squared_error, optax.adam(0.1), start(), batches, chunk=chunk,
                             evaluate=lambda p: seen.append(1) or {"b": float(p["b"])})
    params, losses = python_loop(optax.adam(0.1), start(), 10)
    np.testing.assert_allclose(trained.losses, losses, rtol=1e-12)
    np.testing.assert_allclose(trained.params["w"], params["w"], rtol=1e-12)
    chunks = 1 if chunk is None else 10 // chunk
    assert [row["step"] for row in trained.history] == [(i + 1) * (chunk or 10) for i in range(chunks)]
    assert trained.history[-1]["b"] == pytest.approx(float(params["b"]))
    assert len(trained.chunk_ms) == chunks and trained.ms_per_step == np.median(trained.chunk_ms) > 0
    assert trained.projection is None  # plain Adam: no solver diagnostics


def test_null_space_transform_gets_constraint_args_and_reports_each_step():
    def constraint(params, *, target):  # w_0 + w_1 = target: a linear constraint with an argument
        return jnp.atleast_1d(params["w"][0] + params["w"][1] - target)

    def draw_with_target(index, data):
        batch, _ = draw(index, data)
        return batch, {"target": jnp.asarray(1.0)}

    tx = nullspace.transform(optax.adam(0.1), constraint, gamma=1.0)
    batches = training.Batches(jnp.arange(6), draw_with_target, (X, Y))
    trained = training.train(squared_error, tx, start(), batches, chunk=3)
    params, losses = python_loop(tx, start(), 6, {"target": jnp.asarray(1.0)})
    np.testing.assert_allclose(trained.losses, losses, rtol=1e-10)
    np.testing.assert_allclose(trained.params["w"], params["w"], rtol=1e-10)
    assert float(trained.params["w"][0] + trained.params["w"][1]) == pytest.approx(1.0, abs=1e-8)
    assert trained.projection.violation.shape == (6,)
    assert trained.projection.violation[0] == pytest.approx(1.0)  # ||c|| at the start, before the first step
    assert np.all(trained.projection.iterations > 0)


def test_bad_input_is_refused():
    batches = training.Batches(jnp.arange(10), draw, (X, Y))
    with pytest.raises(ValueError, match="divides the 10 steps"):
        training.train(squared_error, optax.adam(0.1), start(), batches, chunk=3)
    mismatched = training.Batches((jnp.arange(10), jnp.arange(9)), lambda s, d: draw(s[0], d), (X, Y))
    with pytest.raises(ValueError, match="common leading axis"):
        training.train(squared_error, optax.adam(0.1), start(), mismatched)


def test_a_second_seed_reuses_the_compiled_chunk_only_for_the_same_objects():
    tx = optax.adam(0.1)
    first = training.train(squared_error, tx, start(), training.Batches(jnp.arange(10), draw, (X, Y)), chunk=5)
    shifted = training.Batches(jnp.arange(10)[::-1], draw, (X + 1.0, Y))  # new data, same types: no compile
    again = training.train(squared_error, tx, start(), shifted, chunk=5)
    assert again.compile_s < first.compile_s / 5
    assert not np.allclose(again.losses, first.losses)  # it ran on the new arguments, not on baked-in ones
    other = training.train(squared_error, optax.adam(0.1), start(), shifted, chunk=5)  # a new optimiser object
    assert other.compile_s > again.compile_s
    np.testing.assert_allclose(other.losses, again.losses, rtol=1e-12)
