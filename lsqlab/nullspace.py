"""The null-space method: equality-constrained training as a projection of each update.

For a constraint c: R^p -> R^m (m < p) with Jacobian J = dc/dtheta and a proposed update u (optax's
sign convention: the update is *added* to the parameters),

    z = LstSq(J, J u + gamma c, 0)                      (one minimum-norm solve on the wide J)
    d = u - z = (I - J^+ J) u - gamma J^+ c

so that c(theta + d) ~= (1 - gamma) c to first order. ``J v`` comes from ``jax.linearize`` (c is
evaluated once per call) and ``J^T w`` is its transpose, derived by :func:`lsqlab.lstsq`.

:func:`project` applies this to one update; :func:`transform` wraps an optax optimiser so that a
training loop takes constrained steps (see its docstring for why the order of projection and
optimiser matters).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lsqlab.lsmr import STOP_REASONS, LstSqInfo
from lsqlab.lstsq import lstsq
from lsqlab.operators import check_finite, is_concrete

Constraint = Callable[..., jax.Array]  # constraint(params, **constraint_args) -> c, a 1-D array

ORDERS = ("both", "before", "after")
NOT_PROJECTED = -1  # istop of a step that was not projected (warm-up)


class ProjectionInfo(NamedTuple):
    """Diagnostics of one projected step (arrays, so that they can leave ``jit``).

    violation: ||c(theta)||.
    linearized_violation: ||J d + gamma c||, the first-order violation after the step d (0 up to the
      solver tolerance when J has full row rank; > 0 when c is not in the range of J).
    iterations: LSMR iterations, summed over the solves of the step.
    istop: stop code of the last solve (``STOP_REASONS``; -1: step not projected, in warm-up).
    conda: LSMR's estimate of cond(J) on the Krylov space it explored.
    redundancy: estimate of m - rank(J) from one Gaussian probe w, m ||(I - J J^+) w||^2 / ||w||^2
      (0 up to solver tolerance at full row rank); NaN unless ``probe_rank=True``.
    """

    violation: jax.Array
    linearized_violation: jax.Array
    iterations: jax.Array
    istop: jax.Array
    conda: jax.Array
    redundancy: jax.Array

    @property
    def reason(self) -> str:
        """Readable stop reason of the last solve (needs a concrete, unbatched ``istop``)."""
        code = int(self.istop)
        return "not projected (warm-up step)" if code == NOT_PROJECTED else STOP_REASONS[code]


class _Linearized(NamedTuple):
    """c(theta) and v -> J v at one theta, with the options of the solves on J."""

    c: jax.Array
    jvp: Callable[[Any], jax.Array]
    params: Any
    solve_options: dict


def project(
    constraint: Constraint,
    params: Any,
    update: Any,
    *,
    gamma: float | jax.Array = 0.0,
    atol: float = 1e-10,
    btol: float = 1e-10,
    conlim: float = 1e12,
    maxiter: int | None = None,
    probe_rank: bool = False,
    **constraint_args: Any,
) -> tuple[Any, ProjectionInfo]:
    """Project an update onto the constraint's tangent space and add a correction towards c = 0.

    Returns ``d = (I - J^+ J) u - gamma J^+ c`` (J = dc/dtheta at ``params``), computed as
    ``u - LstSq(J, J u + gamma c)``, and a :class:`ProjectionInfo`.

    Args:
      constraint: ``constraint(params, **constraint_args) -> c``, a 1-D array with fewer entries than
        there are parameters.
      params, update: pytrees of the same structure and shapes.
      gamma: fraction of the violation removed per step, in [0, 1].
      atol, btol, conlim, maxiter: LSMR stopping rules of the solve on J (``maxiter=None``: 2 m + 10).
        The projection is only as exact as this solve.
      probe_rank: spend one more solve to estimate m - rank(J) (``info.redundancy``).
      constraint_args: passed on to ``constraint`` (collocation points, a batch, a key).
    """
    _check_same_structure(params, update)
    _check_gamma(gamma)
    lin = _linearize(constraint, params, constraint_args, dict(atol=atol, btol=btol, conlim=conlim, maxiter=maxiter))
    projected, info = _project_linearized(lin, update, gamma)
    if probe_rank:
        info = info._replace(redundancy=_redundancy(lin))
    return projected, info


def transform(
    base: Any,
    constraint: Constraint,
    *,
    gamma: float,
    warmup_steps: int = 0,
    order: str = "both",
    atol: float = 1e-10,
    btol: float = 1e-10,
    conlim: float = 1e12,
    maxiter: int | None = None,
    probe_rank: bool = False,
) -> Any:
    """Wrap an optax optimiser ``base`` so that each step satisfies c(theta) = 0 to first order.

    With P = I - J^+ J and the correction k = -gamma J^+ c (which never passes through ``base``):

      ``"both"`` (default):  d = P base(P g) + k
      ``"before"``:          d = base(P g) + k       (the published order)
      ``"after"``:           d = P base(g) + k

    For SGD the three coincide. For an adaptive ``base`` (Adam), "after" converges to a wrong point
    (the rescaled raw gradient does not vanish at the KKT point) and "before" lets the rescaled step
    leave the tangent space (a constraint violation that persists at larger learning rates); "both"
    has neither defect, for two solves per step ("after": one). Measured in tests/test_nullspace.py.

    Steps ``0 .. warmup_steps - 1`` are plain ``base`` updates; step ``warmup_steps`` is the first
    projected one (``warmup_steps=0``: every step is projected).

    Returns an ``optax.GradientTransformationExtraArgs`` whose
    ``update(updates, state, params, **constraint_args)`` passes ``constraint_args`` on to
    ``constraint``. Its state is a :class:`NullSpaceState` (base state, step count, last
    :class:`ProjectionInfo`).
    """
    import optax  # optional dependency: only the optax wrapper needs it

    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    _check_gamma(gamma)
    base = optax.with_extra_args_support(base)
    solve_options = dict(atol=atol, btol=btol, conlim=conlim, maxiter=maxiter)

    def init(params: Any) -> NullSpaceState:
        dtype = ravel_pytree(params)[0].dtype
        return NullSpaceState(base.init(params), jnp.zeros([], jnp.int32), _unprojected_info(dtype))

    def projected_step(updates: Any, state: NullSpaceState, params: Any, constraint_args: dict):
        lin = _linearize(constraint, params, constraint_args, solve_options)
        if order == "after":
            step, base_state = base.update(updates, state.base_state, params)
            step, info = _project_linearized(lin, step, gamma)
        else:
            tangent_grad, grad_info = _project_linearized(lin, updates, 0.0)
            step, base_state = base.update(tangent_grad, state.base_state, params)
            step, info = _project_linearized(lin, step, gamma, tangent=order == "both")
            info = info._replace(iterations=info.iterations + grad_info.iterations)
        if probe_rank:
            info = info._replace(redundancy=_redundancy(lin))
        return step, base_state, info

    def plain_step(updates: Any, state: NullSpaceState, params: Any):
        step, base_state = base.update(updates, state.base_state, params)
        return step, base_state, _unprojected_info(ravel_pytree(params)[0].dtype)

    def update(updates: Any, state: NullSpaceState, params: Any = None, **constraint_args: Any):
        if params is None:
            raise ValueError("the null-space transform needs params: call update(updates, state, params)")
        _check_same_structure(params, updates)
        if warmup_steps == 0:
            step, base_state, info = projected_step(updates, state, params, constraint_args)
        else:
            step, base_state, info = jax.lax.cond(
                state.count < warmup_steps,
                lambda: plain_step(updates, state, params),
                lambda: projected_step(updates, state, params, constraint_args),
            )
        count = state.count + jnp.ones([], jnp.int32)
        return step, NullSpaceState(base_state, count, info)

    return optax.GradientTransformationExtraArgs(init, update)


class NullSpaceState(NamedTuple):
    """State of :func:`transform`: the base optimiser's state, steps taken, last diagnostics."""

    base_state: Any
    count: jax.Array
    info: ProjectionInfo


def _linearize(constraint: Constraint, params: Any, constraint_args: dict, solve_options: dict) -> _Linearized:
    """c(theta) and v -> J v from one ``jax.linearize`` (c evaluated once); checks m < p and finiteness."""
    c, jvp = jax.linearize(lambda theta: constraint(theta, **constraint_args), params)
    if not (isinstance(c, jax.Array) and c.ndim == 1):
        raise ValueError(f"the constraint must return a 1-D array, got {jax.tree.map(jnp.shape, c)}")
    num_constraints, num_params = c.shape[0], ravel_pytree(params)[0].shape[0]
    if num_constraints >= num_params:
        raise ValueError(
            f"the constraint has {num_constraints} entries but there are only {num_params} parameters: "
            "the null-space method needs fewer constraints than parameters"
        )
    check_finite("the constraint value c(params)", c)
    return _Linearized(c, jvp, params, solve_options)


def _solve(lin: _Linearized, rhs: jax.Array) -> tuple[Any, LstSqInfo]:
    """Minimum-norm z with J z = rhs (least squares if rhs is not in the range of J)."""
    options = dict(lin.solve_options)
    if options["maxiter"] is None:
        options["maxiter"] = 2 * lin.c.shape[0] + 10
    return lstsq(lin.jvp, rhs, domain=lin.params, **options)


def _project_linearized(lin: _Linearized, update: Any, gamma: Any, tangent: bool = True) -> tuple[Any, ProjectionInfo]:
    """d = (I - J^+ J) u - gamma J^+ c (``tangent=False``: d = u - gamma J^+ c), as u - LstSq(J, rhs)."""
    update = jax.tree.map(lambda leaf, like: jnp.asarray(leaf, jnp.result_type(like)), update, lin.params)
    check_finite("the update", update)
    rhs = gamma * lin.c
    if tangent:
        jacobian_update = lin.jvp(update)
        check_finite("J u (the constraint's Jacobian at params applied to the update)", jacobian_update)
        rhs = jacobian_update + rhs
    z, solve_info = _solve(lin, rhs)
    projected = jax.tree.map(jnp.subtract, update, z)
    info = ProjectionInfo(
        violation=jnp.linalg.norm(lin.c),
        linearized_violation=jnp.linalg.norm(lin.jvp(projected) + gamma * lin.c),
        iterations=solve_info.iterations,
        istop=solve_info.istop,
        conda=solve_info.conda,
        redundancy=jnp.full([], jnp.nan, lin.c.dtype),
    )
    return projected, info


def _redundancy(lin: _Linearized) -> jax.Array:
    """m ||(I - J J^+) w||^2 / ||w||^2 for a fixed Gaussian w: an estimate of m - rank(J)."""
    m = lin.c.shape[0]
    w = jnp.asarray(np.random.default_rng(0).standard_normal(m), lin.c.dtype)
    _, info = _solve(lin, w)
    return m * info.normr**2 / jnp.sum(w**2)


def _unprojected_info(dtype: Any) -> ProjectionInfo:
    nan = jnp.full([], jnp.nan, dtype)
    return ProjectionInfo(nan, nan, jnp.zeros([], jnp.int32), jnp.full([], NOT_PROJECTED, jnp.int32), nan, nan)


def _check_gamma(gamma: float | jax.Array) -> None:
    """Refuse a concrete gamma outside [0, 1] or non-finite (a traced one is not inspected)."""
    if not is_concrete(gamma):
        return
    values = np.asarray(gamma)
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"gamma must lie in [0, 1] (the fraction of the violation removed per step), got {gamma}")


def _check_same_structure(params: Any, update: Any) -> None:
    """Raise ValueError unless ``update`` has the tree structure and leaf shapes of ``params``."""
    params_tree, update_tree = jax.tree.structure(params), jax.tree.structure(update)
    if params_tree != update_tree:
        raise ValueError(f"update and params are different pytrees: {update_tree} vs {params_tree}")
    for p_leaf, u_leaf in zip(jax.tree.leaves(params), jax.tree.leaves(update)):
        if jnp.shape(p_leaf) != jnp.shape(u_leaf):
            raise ValueError(f"update has a leaf of shape {jnp.shape(u_leaf)} where params has {jnp.shape(p_leaf)}")
