"""Constraint builders for the null-space method: each returns ``constraint(params, **args) -> c``.

c is a 1-D array that vanishes exactly when the constraint holds; :func:`lsqlab.nullspace.project`
and :func:`lsqlab.nullspace.transform` (or the baselines in :mod:`lsqlab.baselines`) take it as is.
Model and field functions are ``fn(params, x)``; which of them act on batches is said per builder.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Action = Callable[[jax.Array], jax.Array]


def equivariance(
    model_fn: Callable[[Any, jax.Array], jax.Array],
    input_actions: Sequence[Action],
    output_actions: Sequence[Action],
) -> Callable[..., jax.Array]:
    """c = [f(g x_k) - rho(g) f(x_k)] over group elements g and collocation inputs x_k.

    ``model_fn(params, xs)`` maps a batch of inputs to a batch of outputs; ``input_actions[i]`` applies
    g_i to a batch of inputs and ``output_actions[i]`` applies rho(g_i) to a batch of outputs (the
    identity for invariance). Generators suffice (equivariance under generators gives it for the whole
    group); leave out the identity element, whose rows of J are zero.

    Returns ``constraint(params, *, inputs)``.
    """
    if len(input_actions) != len(output_actions) or not input_actions:
        raise ValueError(
            f"need one output action per input action, got {len(input_actions)} and {len(output_actions)}"
        )

    def constraint(params: Any, *, inputs: jax.Array) -> jax.Array:
        outputs = model_fn(params, inputs)
        return jnp.concatenate([
            jnp.ravel(model_fn(params, act_in(inputs)) - act_out(outputs))
            for act_in, act_out in zip(input_actions, output_actions)
        ])

    return constraint


def sparsity(mask: Any) -> Callable[[Any], jax.Array]:
    """c = theta_S: the parameters where ``mask`` is True must vanish.

    ``mask`` is a pytree of boolean arrays with the structure and shapes of the parameters (concrete:
    the selected indices are fixed when the constraint is built). J is a selection matrix, J^+ = J^T,
    so the solve on J converges in one iteration.
    """
    indices = [np.flatnonzero(np.asarray(leaf, dtype=bool)) for leaf in jax.tree.leaves(mask)]
    if sum(len(i) for i in indices) == 0:
        raise ValueError("the mask selects no parameter")
    mask_tree = jax.tree.structure(mask)

    def constraint(params: Any) -> jax.Array:
        if jax.tree.structure(params) != mask_tree:
            raise ValueError(f"params {jax.tree.structure(params)} and mask {mask_tree} are different pytrees")
        return jnp.concatenate([jnp.ravel(leaf)[idx] for leaf, idx in zip(jax.tree.leaves(params), indices)])

    return constraint


def conservativeness(field_fn: Callable[[Any, jax.Array], jax.Array]) -> Callable[..., jax.Array]:
    """c = upper-triangular entries of (D - D^T)/2, D = ds/dx, at every collocation point.

    ``field_fn(params, x)`` maps one point x in R^d to s(x) in R^d. A gradient field (s = -grad E) has
    symmetric D, hence c = 0. Exact: d (d - 1) / 2 entries per point, for d forward-mode passes.

    Returns ``constraint(params, *, points)`` with ``points`` of shape (k, d).
    """

    def antisymmetric_part(params: Any, x: jax.Array) -> jax.Array:
        jac = jax.jacfwd(lambda y: field_fn(params, y))(x)
        rows, cols = np.triu_indices(x.shape[0], k=1)
        return 0.5 * (jac - jac.T)[rows, cols]

    def constraint(params: Any, *, points: jax.Array) -> jax.Array:
        return jnp.ravel(jax.vmap(antisymmetric_part, in_axes=(None, 0))(params, points))

    return constraint


def conservativeness_probes(
    field_fn: Callable[[Any, jax.Array], jax.Array], num_probes: int = 1
) -> Callable[..., jax.Array]:
    """c = v^T (D - D^T) w = v . (D w) - w . (D v) for Gaussian probes v, w; D = ds/dx at each point.

    The random-probe variant of :func:`conservativeness`: ``num_probes`` entries per point, each for two
    Jacobian-vector products, whatever the dimension. Fresh probes come from ``key`` at every call.

    Returns ``constraint(params, *, points, key)`` with ``points`` of shape (k, d).
    """

    def probed(params: Any, x: jax.Array, v: jax.Array, w: jax.Array) -> jax.Array:
        field = lambda y: field_fn(params, y)  # noqa: E731
        _, jac_w = jax.jvp(field, (x,), (w,))
        _, jac_v = jax.jvp(field, (x,), (v,))
        return v @ jac_w - w @ jac_v

    per_probe = jax.vmap(probed, in_axes=(None, None, 0, 0))
    per_point = jax.vmap(per_probe, in_axes=(None, 0, 0, 0))

    def constraint(params: Any, *, points: jax.Array, key: jax.Array) -> jax.Array:
        v, w = jax.random.normal(key, (2, points.shape[0], num_probes, points.shape[1]), points.dtype)
        return jnp.ravel(per_point(params, points, v, w))

    return constraint


def periodicity(model_fn: Callable[[Any, jax.Array], jax.Array], period: Any) -> Callable[..., jax.Array]:
    """c = f(x_k + T) - f(x_k) over collocation inputs x_k.

    ``model_fn(params, xs)`` maps a batch of inputs to a batch of outputs; ``period`` T is a scalar or
    broadcasts against one input (a vector of periods, zero along non-periodic coordinates).

    Returns ``constraint(params, *, inputs)``.
    """

    def constraint(params: Any, *, inputs: jax.Array) -> jax.Array:
        return jnp.ravel(model_fn(params, inputs + period) - model_fn(params, inputs))

    return constraint
