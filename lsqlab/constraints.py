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

from lsqlab.operators import is_concrete, read_back

Action = Callable[[jax.Array], jax.Array]


def equivariance(
    model_fn: Callable[[Any, jax.Array], jax.Array],
    input_actions: Sequence[Action],
    output_actions: Sequence[Action],
) -> Callable[..., jax.Array]:
    """c = [f(g x_k) - rho(g) f(x_k)] over group elements g and collocation inputs x_k.

    ``model_fn(params, xs)`` maps a batch of inputs to a batch of outputs, each output depending on its
    own input only (it is called once on all transformed batches stacked); ``input_actions[i]`` applies
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
        # one model call on [x; g_1 x; ...; g_G x] (one batched pass is cheaper than G + 1 small ones)
        k = inputs.shape[0]
        stacked = jnp.concatenate([inputs] + [act_in(inputs) for act_in in input_actions])
        outputs = model_fn(params, stacked)
        upright = outputs[:k]
        return jnp.concatenate([
            jnp.ravel(outputs[(i + 1) * k:(i + 2) * k] - act_out(upright)) for i, act_out in enumerate(output_actions)
        ])

    return constraint


class Selection:
    """c = theta_S - v_S: the parameters where ``mask`` is True must equal ``target`` (0 by default).

    J selects the masked coordinates, so J J^T = I and J^+ = J^T. The projection needs no solve:

        (I - J^+ J) u = where(mask, 0, u),      J^+ c = where(mask, theta - v, 0),

    and :mod:`lsqlab.nullspace` uses these (elementwise on every leaf, so a sharded pytree stays
    sharded, in the parameters' sharding, and nothing is gathered). Called, a selection returns c as
    the 1-D array of the masked entries in leaf order (for penalties, checks and the generic solve
    path); its length, the number of masked entries, is counted once at construction (on the mask's
    devices), so the call traces under ``jit`` but needs a mask that is concrete when the selection
    is built.

    ``mask``: a pytree of boolean arrays with the structure and shapes of the parameters (NumPy or
    JAX arrays, sharded or not, concrete or traced; shard it like the parameters, or each device keeps
    a whole copy); ``target``: None or a pytree of that structure.
    """

    def __init__(self, mask: Any, target: Any = None):
        self.mask = jax.tree.map(lambda leaf: jnp.asarray(leaf, bool), mask)
        self.target = target
        if target is not None and jax.tree.structure(target) != jax.tree.structure(self.mask):
            raise ValueError(
                f"target {jax.tree.structure(target)} and mask {jax.tree.structure(self.mask)} are different pytrees")
        self._counts = None
        if is_concrete(self.mask):
            self._counts = [int(read_back(_count, leaf)) for leaf in jax.tree.leaves(self.mask)]
        if self._counts is not None and sum(self._counts) == 0:
            raise ValueError("the mask selects no parameter")

    @property
    def arrays(self) -> tuple[Any, Any]:
        """(mask, target) as arrays: what the closed-form projection reads (target 0 when None)."""
        return self.mask, self.target

    def __call__(self, params: Any) -> jax.Array:
        """c = theta_S - v_S as a 1-D array (the masked entries in leaf order, replicated)."""
        self.check_params(params)
        if self._counts is None:
            raise ValueError("evaluating c as a 1-D array needs a mask that is concrete when the selection is "
                             "built (its count fixes c's length); a traced mask projects in closed form "
                             "(nullspace.project, transform) or through selection_residual")
        differences = selection_residual(self.arrays, params)
        return jnp.concatenate([_compact(leaf, mask, count) for leaf, mask, count
                                in zip(jax.tree.leaves(differences), jax.tree.leaves(self.mask), self._counts)])

    def check_params(self, params: Any) -> None:
        """Raise ValueError unless params has the mask's structure and shapes."""
        if jax.tree.structure(params) != jax.tree.structure(self.mask):
            raise ValueError(f"params {jax.tree.structure(params)} and mask {jax.tree.structure(self.mask)} "
                             "are different pytrees")
        for leaf, mask_leaf in zip(jax.tree.leaves(params), jax.tree.leaves(self.mask)):
            if jnp.shape(leaf) != mask_leaf.shape:
                raise ValueError(f"params has a leaf of shape {jnp.shape(leaf)} where the mask has {mask_leaf.shape}")


@jax.jit
def _count(mask: jax.Array) -> jax.Array:
    """The number of True entries, summed where the mask lives (a scalar any process can read)."""
    return jnp.sum(mask)


def _compact(values: jax.Array, mask: jax.Array, count: int) -> jax.Array:
    """values[mask] in row-major order, with its length ``count`` known: positions by a prefix sum
    along each slice values[i] and one over the slices' counts, then one scatter-add. For a leaf
    sharded along axis 0, the devices exchange only the shape[0] slice counts and sum the
    ``count``-long result: no entry of the leaf is gathered."""
    if count == 0:
        return jnp.zeros(0, values.dtype)
    rows = (mask.shape[0] if mask.ndim else 1, -1)
    selected = jnp.reshape(mask, rows).astype(jnp.int32 if mask.size < 2**31 else jnp.int64)
    within = jnp.cumsum(selected, axis=1)
    before = jnp.cumsum(within[:, -1]) - within[:, -1]
    positions = jnp.where(selected > 0, before[:, None] + within - 1, count)  # count: out of range, dropped
    return jnp.zeros(count, values.dtype).at[positions].add(jnp.reshape(values, rows), mode="drop")


def selection_residual(arrays: tuple[Any, Any], params: Any) -> Any:
    """J^+ c = where(mask, theta - v, 0) for ``arrays = (mask, target)`` of a :class:`Selection`."""
    mask, target = arrays
    if target is None:
        return jax.tree.map(lambda m, theta: jnp.where(m, theta, jnp.zeros_like(theta)), mask, params)
    return jax.tree.map(lambda m, theta, v: jnp.where(m, theta - v, jnp.zeros_like(theta)), mask, params, target)


def selection_tangent(arrays: tuple[Any, Any], update: Any) -> Any:
    """(I - J^+ J) u = where(mask, 0, u) for ``arrays = (mask, target)`` of a :class:`Selection`."""
    return jax.tree.map(lambda m, u: jnp.where(m, jnp.zeros_like(u), u), arrays[0], update)


def sparsity(mask: Any) -> Selection:
    """c = theta_S: the parameters where ``mask`` is True must vanish (a :class:`Selection`)."""
    return Selection(mask)


def fixed(mask: Any, values: Any) -> Selection:
    """c = theta_S - v_S: the parameters where ``mask`` is True are held at ``values`` (a :class:`Selection`)."""
    return Selection(mask, values)


class Pointwise:
    """c = [c(theta; a_1); ...; c(theta; a_k)]: one block of entries per collocation point, each block
    depending on its own point's arguments only.

    ``single(params, **args_j)`` returns the 1-D block of point j; every constraint argument is batched
    along its axis 0 (``args_j = {name: value[j]}``). Called as ``constraint(params, **args)`` it
    evaluates all blocks (``vmap``). The structure makes J cheap to form: its rows come point by point
    (``vmap`` over points of ``jax.jacrev(single)``), k small reverse passes instead of m passes over
    all k points, which :class:`lsqlab.multipliers.GramDense` uses.
    """

    def __init__(self, single: Callable[..., jax.Array]):
        self.single = single

    def __call__(self, params: Any, **args: jax.Array) -> jax.Array:
        return jnp.ravel(jax.vmap(lambda point_args: self.single(params, **point_args))(args))

    def jacobian_rows(self, params: Any, **args: jax.Array) -> Any:
        """J as a pytree like ``params`` with a leading axis of m (the rows, in the order of c)."""
        first = jax.tree.map(lambda value: value[0], args)
        if jax.eval_shape(lambda p: self.single(p, **first), params).shape == (1,):  # one entry per point:
            # a gradient per point (faster on the CPU than jacrev's vmap over one cotangent)
            return jax.vmap(lambda point_args: jax.grad(lambda p: self.single(p, **point_args)[0])(params))(args)
        blocks = jax.vmap(lambda point_args: jax.jacrev(lambda p: self.single(p, **point_args))(params))(args)
        return jax.tree.map(lambda leaf: jnp.reshape(leaf, (-1, *leaf.shape[2:])), blocks)


def conservativeness(field_fn: Callable[[Any, jax.Array], jax.Array]) -> Pointwise:
    """c = upper-triangular entries of (D - D^T)/2, D = ds/dx, at every collocation point.

    ``field_fn(params, x)`` maps one point x in R^d to s(x) in R^d. A gradient field (s = -grad E) has
    symmetric D, hence c = 0. Exact: d (d - 1) / 2 entries per point, for d forward-mode passes.

    Returns ``constraint(params, *, points)`` with ``points`` of shape (k, d), a :class:`Pointwise`.
    """

    def antisymmetric_part(params: Any, *, points: jax.Array) -> jax.Array:  # one point x = points[j]
        jac = jax.jacfwd(lambda y: field_fn(params, y))(points)
        rows, cols = np.triu_indices(points.shape[0], k=1)
        return 0.5 * (jac - jac.T)[rows, cols]

    return Pointwise(antisymmetric_part)
