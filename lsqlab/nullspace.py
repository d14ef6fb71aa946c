"""The null-space method: equality-constrained training as a projection of each update.

For a constraint c: R^p -> R^m (m < p) with Jacobian J = dc/dtheta and a proposed update u (optax's
sign convention: the update is *added* to the parameters),

    z = LstSq(J, J u + gamma c, 0)                      (one minimum-norm solve on the wide J)
    d = u - z = (I - J^+ J) u - gamma J^+ c

so that c(theta + d) ~= (1 - gamma) c to first order. ``J v`` comes from one ``jax.linearize`` per
step (shared by every product of the step) and ``J^T w`` is its transpose.

How z is found, by the constraint's structure:
- a :class:`lsqlab.constraints.Selection` (sparsity masks, fixed coordinates): in closed form,
  ``d = where(mask, -gamma (theta - v), u)``, elementwise, no solve;
- any other constraint: LSMR on J from zero (default), or, in :func:`transform` with ``gram=``, CG on
  the Gram form (J J^T) y = J u + gamma c, warm-started from the previous step's multipliers y and
  optionally preconditioned (:mod:`lsqlab.multipliers`).

:func:`project` applies this to one update; :func:`transform` wraps an optax optimiser so that a
training loop takes constrained steps (see its docstring for why the order of projection and
optimiser matters).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab import multipliers
from lsqlab.constraints import Pointwise, Selection, selection_residual, selection_tangent
from lsqlab.lsmr import lsmr, tree_norm
from lsqlab.operators import LinearMap, check_finite, is_concrete
from lsqlab.solver import STOP_REASONS, LstSqInfo, SolverOptions

Constraint = Callable[..., jax.Array]  # constraint(params, **constraint_args) -> c, a 1-D array

ORDERS = ("both", "before", "after")
DEFAULT_OPTIONS = SolverOptions(atol=1e-10, btol=1e-10, conlim=1e12)
"""The LSMR options of the solves on J when ``options=None``. Here, in :func:`project` and
:func:`transform`, ``maxiter=None`` means 2 m + 10 (m constraints), not min(m, p)."""
NOT_PROJECTED = -1  # istop of the initial state (no step taken yet)
CLOSED_FORM = -2  # istop of a selection's step (no solve)
GRAM_CONVERGED, GRAM_LIMIT = -3, -4  # istop of a Gram-form CG solve: rtol met / maxiter reached
GRAM_DENSE = -5  # istop of a dense Gram-form solve (J formed, pseudo-inverse of J J^T)
_REASONS = {
    NOT_PROJECTED: "not projected (no step taken yet)",
    CLOSED_FORM: "closed form (a selection constraint: no solve)",
    GRAM_CONVERGED: "Gram-form CG: ||J d + gamma c|| <= rtol ||J u + gamma c||",
    GRAM_LIMIT: "Gram-form CG: iteration limit reached before rtol",
    GRAM_DENSE: "dense Gram form: J formed, (J J^T)^+ by eigendecomposition",
}


class ProjectionInfo(NamedTuple):
    """Diagnostics of one projected step (arrays, so that they can leave ``jit``).

    violation: ||c(theta)||.
    linearized_violation: ||J d + gamma c||, the first-order violation after the step d (0 up to the
      solver tolerance when J has full row rank; > 0 when c is not in the range of J).
    iterations: solver iterations, summed over the solves of the step (0 for a selection).
    istop: stop code of the last solve: LSMR's (``STOP_REASONS``) or one of -1 (no step yet), -2 (closed
      form), -3/-4 (Gram-form CG met rtol / hit maxiter); ``reason`` reads it.
    conda: LSMR's estimate of cond(J) on the Krylov space it explored (NaN for the other solvers).
    preconditioner_age: steps since the Gram form's preconditioner was built (-1: none).
    """

    violation: jax.Array
    linearized_violation: jax.Array
    iterations: jax.Array
    istop: jax.Array
    conda: jax.Array
    preconditioner_age: jax.Array

    @property
    def reason(self) -> str:
        """Readable stop reason of the last solve (needs a concrete, unbatched ``istop``)."""
        code = int(self.istop)
        return _REASONS[code] if code < 0 else STOP_REASONS[code]


class _Linearized(NamedTuple):
    """c(theta), v -> J v and w -> J^T w at one theta, with the LSMR options of the solves on J, and
    J's rows when they were formed (a pytree with a leading axis of m; else None)."""

    c: jax.Array
    jvp: Callable[[Any], jax.Array]
    vjp: Callable[[jax.Array], Any]
    params: Any
    options: SolverOptions
    rows: Any = None


def project(
    constraint: Constraint,
    params: Any,
    update: Any,
    *,
    gamma: float | jax.Array = 0.0,
    options: SolverOptions | None = None,
    **constraint_args: Any,
) -> tuple[Any, ProjectionInfo]:
    """Project an update onto the constraint's tangent space and add a correction towards c = 0.

    Returns ``d = (I - J^+ J) u - gamma J^+ c`` (J = dc/dtheta at ``params``), computed as
    ``u - LstSq(J, J u + gamma c)`` (in closed form for a :class:`~lsqlab.constraints.Selection`),
    and a :class:`ProjectionInfo`.

    Args:
      constraint: ``constraint(params, **constraint_args) -> c``, a 1-D array with fewer entries than
        there are parameters, or a :class:`~lsqlab.constraints.Selection`.
      params, update: pytrees of the same structure and shapes.
      gamma: fraction of the violation removed per step, in [0, 1].
      options: LSMR's stopping rules for the solve on J (None: :data:`DEFAULT_OPTIONS`; ``maxiter=None``
        is 2 m + 10). The projection is only as exact as this solve.
      constraint_args: passed on to ``constraint`` (collocation points, a batch, a key).

    Sharded params and update (eagerly or under ``jit``, one host or several processes): d keeps
    the parameters' sharding, leaf by leaf, and nothing is gathered. A Selection's step is
    elementwise; the generic path runs LSMR on pytrees like the parameters (never one concatenated
    vector), so its products exchange only what J v and J^T w themselves need (m-vectors, scalars).
    """
    _check_same_structure(params, update)
    _check_gamma(gamma)
    if isinstance(constraint, Selection):
        _check_selection(constraint, params, constraint_args)
        return _project_selection(constraint.arrays, params, update, gamma, tangent=True)
    update = _checked_update(update, params)
    options = _lsmr_options(options)
    projected, info, c, jacobian_update = _project_compiled(constraint, options, params, update, gamma, constraint_args)
    check_finite("the constraint value c(params)", c)
    check_finite("J u (the constraint's Jacobian at params applied to the update)", jacobian_update)
    return projected, info


@partial(jax.jit, static_argnums=(0, 1))
def _project_compiled(constraint: Constraint, options: SolverOptions, params: Any, update: Any,
                      gamma: Any, constraint_args: dict) -> tuple[Any, ProjectionInfo, jax.Array, jax.Array]:
    """:func:`project`'s generic path, compiled once per (constraint, options, shapes): called eagerly in a
    loop (the widgets do), it would otherwise compile LSMR's loop at every call. Also returns c and J u,
    for the finiteness checks that can only run outside."""
    lin = _linearize(constraint, params, constraint_args, options)
    projected, info = _project_lsmr(lin, update, gamma)
    return projected, info, lin.c, lin.jvp(update)


def transform(
    base: Any,
    constraint: Constraint,
    *,
    gamma: float,
    order: str = "both",
    options: SolverOptions | None = None,
    gram: multipliers.GramCG | multipliers.GramDense | None = None,
    num_constraints: int | None = None,
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

    The solves: closed form for a :class:`~lsqlab.constraints.Selection` (its mask is kept in the
    state as arrays, so a compiled step does not embed it as a constant); else LSMR from zero with
    ``options`` (as in :func:`project`); or, with ``gram=GramCG(...)``, CG on (J J^T) y = rhs, each of
    the step's solves warm-started from its own multipliers of the previous step, with an optional
    Nystrom preconditioner rebuilt every ``refresh_every`` steps (``num_constraints`` = m is needed
    when the constraint takes arguments, to size the multipliers at init); or, with
    ``gram=GramDense()`` for small m, J formed once per step and (J J^T)^+ shared by both solves
    (see :mod:`lsqlab.multipliers`).

    Sharded parameters: steps keep the parameters' sharding and no solver gathers a parameter. With
    a Selection the step is elementwise (the mask in the state keeps its own sharding: shard it like
    the parameters); LSMR works as in :func:`project`; the Gram forms exchange only m-vectors and
    (GramDense) the m x m sums of J J^T, never a parameter or J's rows.

    Returns an ``optax.GradientTransformationExtraArgs`` whose
    ``update(updates, state, params, **constraint_args)`` passes ``constraint_args`` on to
    ``constraint``. Its state is a :class:`NullSpaceState`.
    """
    import optax  # optional dependency: only the optax wrapper needs it

    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    _check_gamma(gamma)
    selection = isinstance(constraint, Selection)
    if gram is not None:
        if selection:
            raise ValueError("a Selection is projected in closed form: leave gram=None")
        gram.check()
    base = optax.with_extra_args_support(base)
    options = _lsmr_options(options)

    def init(params: Any) -> NullSpaceState:
        dtype = _parameter_dtype(params)
        if selection:
            constraint.check_params(params)
            solver_state = constraint.arrays
        elif isinstance(gram, multipliers.GramCG):
            solver_state = _GramState.empty(_constraint_count(constraint, params, num_constraints), dtype, gram)
        else:
            solver_state = None
        return NullSpaceState(base.init(params), jnp.zeros([], jnp.int32), _unprojected_info(dtype), solver_state)

    def projector(params: Any, state: NullSpaceState, constraint_args: dict) -> tuple[_Projector, Any]:
        """The step's two projections (tangent: u -> P u; full: u -> P u + k, or u + k) and the solver
        state they start from; each maps (u, solver state) to (d, info, solver state)."""
        if selection:
            arrays = state.solver_state
            return _Projector(
                lambda u, s: (*_project_selection(arrays, params, u, 0.0, tangent=True), s),
                lambda u, tangent, s: (*_project_selection(arrays, params, u, gamma, tangent=tangent), s),
            ), arrays
        if isinstance(gram, multipliers.GramDense) and isinstance(constraint, Pointwise):
            lin = _from_rows(constraint, params, constraint_args, options)  # J by points; no linearize
        else:
            lin = _linearize(constraint, params, constraint_args, options)
        if gram is None:
            return _Projector(
                lambda u, s: (*_project_lsmr(lin, u, 0.0), s),
                lambda u, tangent, s: (*_project_lsmr(lin, u, gamma, tangent=tangent), s),
            ), None
        if isinstance(gram, multipliers.GramDense):
            m, dtype = lin.c.shape[0], lin.c.dtype
            rows = lin.rows if lin.rows is not None else multipliers.rows_by_vjp(lin.vjp, m, dtype)
            factor = multipliers.dense_factor(rows, m, dtype, gram)
            return _Projector(
                lambda u, s: (*_project_dense(lin, u, 0.0, True, factor), s),
                lambda u, tangent, s: (*_project_dense(lin, u, gamma, tangent, factor), s),
            ), None
        return _Projector(
            lambda u, s: _project_gram(lin, u, 0.0, True, "y_tangent", s, gram),
            lambda u, tangent, s: _project_gram(lin, u, gamma, tangent, "y_step", s, gram),
        ), _GramState.refreshed(state.solver_state, lin, gram, state.count)

    def projected_step(updates: Any, state: NullSpaceState, params: Any, constraint_args: dict):
        projection, solver_state = projector(params, state, constraint_args)
        if order == "after":
            step, base_state = base.update(updates, state.base_state, params)
            step, info, solver_state = projection.full(step, True, solver_state)
        else:
            tangent_grad, grad_info, solver_state = projection.tangent(updates, solver_state)
            step, base_state = base.update(tangent_grad, state.base_state, params)
            step, info, solver_state = projection.full(step, order == "both", solver_state)
            info = info._replace(iterations=info.iterations + grad_info.iterations)
        return step, base_state, info, solver_state

    def update(updates: Any, state: NullSpaceState, params: Any = None, **constraint_args: Any):
        if params is None:
            raise ValueError("the null-space transform needs params: call update(updates, state, params)")
        return compiled_update(updates, state, params, constraint_args)

    @jax.jit  # one compilation per shapes, also for eager calls in a loop (inlined under an outer jit)
    def compiled_update(updates: Any, state: NullSpaceState, params: Any, constraint_args: dict):
        _check_same_structure(params, updates)
        if selection:
            _check_selection(constraint, params, constraint_args)
        step, base_state, info, solver_state = projected_step(updates, state, params, constraint_args)
        count = state.count + jnp.ones([], jnp.int32)
        return step, NullSpaceState(base_state, count, info, solver_state)

    return optax.GradientTransformationExtraArgs(init, update)


class NullSpaceState(NamedTuple):
    """State of :func:`transform`: the base optimiser's state, steps taken, last diagnostics, and what
    the solves keep between steps (a selection's (mask, target); the Gram form's multipliers and
    preconditioner; None for LSMR)."""

    base_state: Any
    count: jax.Array
    info: ProjectionInfo
    solver_state: Any = None


class _GramState(NamedTuple):
    """Multipliers of the previous step's two solves, the preconditioner and its age in steps (-1: never built)."""

    y_tangent: jax.Array
    y_step: jax.Array
    preconditioner: multipliers.Nystrom
    age: jax.Array

    @staticmethod
    def empty(m: int, dtype: Any, gram: multipliers.GramCG) -> "_GramState":
        """Zero multipliers and a preconditioner never built."""
        zeros = jnp.zeros(m, dtype)
        rank = min(gram.rank, m)
        basis = multipliers.Nystrom(jnp.zeros((m, rank), dtype), jnp.ones(rank, dtype))
        return _GramState(zeros, zeros, basis, jnp.full([], -1, jnp.int32))

    @staticmethod
    def refreshed(state: "_GramState", lin: _Linearized, gram: multipliers.GramCG, count: jax.Array) -> "_GramState":
        """Zero multipliers when not warm-starting or at the first step; the preconditioner rebuilt
        when it is ``refresh_every`` steps old (or was never built)."""
        m, dtype = lin.c.shape[0], lin.c.dtype
        if state.y_tangent.shape != (m,):
            raise ValueError(f"the constraint returned {m} entries, but the transform's state holds "
                             f"{state.y_tangent.shape[0]} multipliers: initialise it with params of this problem")
        if not gram.warm_start:
            state = state._replace(y_tangent=jnp.zeros(m, dtype), y_step=jnp.zeros(m, dtype))
        if gram.rank == 0:
            return state
        age = jnp.where(state.age < 0, -1, state.age + 1)
        stale = (age < 0) | (age >= gram.refresh_every)
        key = jax.random.fold_in(jax.random.PRNGKey(0), count)
        preconditioner = jax.lax.cond(
            stale, lambda: multipliers.nystrom(lin.jvp, lin.vjp, m, gram.rank, key, dtype), lambda: state.preconditioner)
        return state._replace(preconditioner=preconditioner, age=jnp.where(stale, 0, age).astype(jnp.int32))


class _Projector(NamedTuple):
    tangent: Callable[[Any, Any], tuple[Any, ProjectionInfo, Any]]
    full: Callable[[Any, bool, Any], tuple[Any, ProjectionInfo, Any]]


def _constraint_count(constraint: Constraint, params: Any, num_constraints: int | None) -> int:
    """m, to size the multipliers at init: given, or from ``constraint(params)`` (shapes only)."""
    if num_constraints is not None:
        return num_constraints
    try:
        return jax.eval_shape(constraint, params).shape[0]
    except TypeError as error:
        raise ValueError("the Gram form keeps m multipliers in its state: pass num_constraints=m to transform "
                         f"when the constraint needs arguments ({error})") from None


def _lsmr_options(options: SolverOptions | None) -> SolverOptions:
    """``options`` checked (None: :data:`DEFAULT_OPTIONS`)."""
    if options is None:
        return DEFAULT_OPTIONS
    if not isinstance(options, SolverOptions):
        raise TypeError(f"options must be SolverOptions or None, got {type(options).__name__}")
    options.check_static()
    return options


def _linearize(constraint: Constraint, params: Any, constraint_args: dict, options: SolverOptions) -> _Linearized:
    """c(theta), v -> J v and its transpose from one ``jax.linearize`` (c evaluated once); checks m < p
    and finiteness."""
    c, jvp = jax.linearize(lambda theta: constraint(theta, **constraint_args), params)
    _check_value(c, params)
    transpose = jax.linear_transpose(jvp, params)
    return _Linearized(c, jvp, lambda w: transpose(w)[0], params, options)


def _from_rows(constraint: Pointwise, params: Any, constraint_args: dict, options: SolverOptions) -> _Linearized:
    """c(theta) and J formed point by point (:meth:`Pointwise.jacobian_rows`); J v and J^T w from the rows."""
    c = constraint(params, **constraint_args)
    _check_value(c, params)
    rows = constraint.jacobian_rows(params, **constraint_args)
    return _Linearized(c, partial(multipliers.rows_times, rows), partial(multipliers.rows_transposed_times, rows),
                       params, options, rows)


def _check_value(c: Any, params: Any) -> None:
    """c must be a finite 1-D array with fewer entries than there are parameters."""
    if not (isinstance(c, jax.Array) and c.ndim == 1):
        raise ValueError(f"the constraint must return a 1-D array, got {jax.tree.map(jnp.shape, c)}")
    num_constraints, num_params = c.shape[0], _parameter_count(params)
    if num_constraints >= num_params:
        raise ValueError(
            f"the constraint has {num_constraints} entries but there are only {num_params} parameters: "
            "the null-space method needs fewer constraints than parameters"
        )
    check_finite("the constraint value c(params)", c)


def _lsmr_on_j(lin: _Linearized, rhs: jax.Array) -> tuple[Any, LstSqInfo]:
    """Minimum-norm z with J z = rhs (least squares if rhs is not in the range of J), by LSMR from zero
    with z a pytree like the parameters (called directly: the products are linear by construction,
    nothing to check or differentiate). Never flattened: concatenating leaves of different
    shardings into one vector makes XLA gather a sharded leaf on every device at every product."""
    m, dtype = lin.c.shape[0], _parameter_dtype(lin.params)
    common = partial(jax.tree.map, lambda leaf: leaf.astype(dtype))  # leaves of mixed dtypes: solve in the promoted one
    own = partial(jax.tree.map, lambda leaf, like: leaf.astype(jnp.result_type(like)))
    operator = LinearMap(mv=lambda v: lin.jvp(own(v, lin.params)), rmv=lambda w: common(lin.vjp(w)),
                         shape=(m, _parameter_count(lin.params)))
    options = lin.options
    if options.maxiter is None:
        options = replace(options, maxiter=2 * m + 10)
    z, info = lsmr(operator, rhs, 0.0, None, options)
    return own(z, lin.params), info


def _parameter_count(params: Any) -> int:
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))


def _parameter_dtype(params: Any) -> Any:
    """The dtype the parameters share (as ravel_pytree would promote them), read without touching them."""
    return jnp.result_type(*(jnp.result_type(leaf) for leaf in jax.tree.leaves(params)))


def _right_hand_side(lin: _Linearized, update: Any, gamma: Any, tangent: bool) -> tuple[Any, jax.Array]:
    """The update in the parameters' dtypes, checked, and rhs = J u + gamma c (``tangent=False``: gamma c)."""
    update = _checked_update(update, lin.params)
    rhs = gamma * lin.c
    if tangent:
        jacobian_update = lin.jvp(update)
        check_finite("J u (the constraint's Jacobian at params applied to the update)", jacobian_update)
        rhs = jacobian_update + rhs
    return update, rhs


def _project_lsmr(lin: _Linearized, update: Any, gamma: Any, tangent: bool = True) -> tuple[Any, ProjectionInfo]:
    """d = (I - J^+ J) u - gamma J^+ c (``tangent=False``: d = u - gamma J^+ c), as u - LstSq(J, rhs)."""
    update, rhs = _right_hand_side(lin, update, gamma, tangent)
    z, solve_info = _lsmr_on_j(lin, rhs)
    projected = jax.tree.map(jnp.subtract, update, z)
    info = _info(lin.c, jnp.linalg.norm(lin.jvp(projected) + gamma * lin.c), solve_info.iterations,
                 solve_info.istop, solve_info.conda)
    return projected, info


def _project_gram(lin: _Linearized, update: Any, gamma: Any, tangent: bool, slot: str, state: _GramState,
                  gram: multipliers.GramCG) -> tuple[Any, ProjectionInfo, _GramState]:
    """d = u - J^T y, (J J^T) y = rhs by CG from the multipliers in ``state``'s ``slot``, which then
    hold y (the next step's warm start)."""
    update, rhs = _right_hand_side(lin, update, gamma, tangent)
    preconditioner = state.preconditioner if gram.rank else multipliers.identity(lin.c.shape[0], lin.c.dtype)
    solution = multipliers.solve(lin.jvp, lin.vjp, rhs, getattr(state, slot), preconditioner, gram)
    projected = jax.tree.map(jnp.subtract, update, solution.z)
    met = solution.residual_norm <= gram.rtol * jnp.linalg.norm(rhs)
    info = _info(lin.c, solution.residual_norm, solution.iterations, jnp.where(met, GRAM_CONVERGED, GRAM_LIMIT),
                 jnp.full([], jnp.nan, lin.c.dtype))
    age = state.age if gram.rank else jnp.full([], -1, jnp.int32)
    return projected, info._replace(preconditioner_age=age), state._replace(**{slot: solution.y})


def _project_dense(lin: _Linearized, update: Any, gamma: Any, tangent: bool,
                   factor: multipliers.DenseFactor) -> tuple[Any, ProjectionInfo]:
    """d = u - J^T (J J^T)^+ rhs with J formed (``factor``)."""
    update, rhs = _right_hand_side(lin, update, gamma, tangent)
    solution = multipliers.dense_solve(factor, rhs)
    projected = jax.tree.map(jnp.subtract, update, solution.z)
    return projected, _info(lin.c, solution.residual_norm, solution.iterations, jnp.asarray(GRAM_DENSE),
                            jnp.full([], jnp.nan, lin.c.dtype))


def _project_selection(arrays: tuple[Any, Any], params: Any, update: Any, gamma: Any,
                       tangent: bool) -> tuple[Any, ProjectionInfo]:
    """d = where(mask, -gamma (theta - v), u) (``tangent=False``: u - gamma J^+ c), elementwise on every
    leaf. J d + gamma c = 0 on the mask by construction, so the linearized violation is reported as 0
    (``tangent=False``: ||J u||, what the untouched update leaves)."""
    update = _checked_update(update, params)
    correction = selection_residual(arrays, params)  # J^+ c, zero off the mask
    kept = selection_tangent(arrays, update) if tangent else update
    projected = jax.tree.map(lambda u, r: u - gamma * r, kept, correction)
    dtype = _parameter_dtype(params)
    left = jnp.zeros([], dtype) if tangent else tree_norm(selection_residual((arrays[0], None), update))
    info = _info(None, left, jnp.zeros([], jnp.int32), jnp.full([], CLOSED_FORM, jnp.int32), jnp.ones([], dtype),
                 violation=tree_norm(correction))
    return projected, info


def _checked_update(update: Any, params: Any) -> Any:
    """The update in the parameters' dtypes; NaN/Inf in a concrete one is refused."""
    update = jax.tree.map(lambda leaf, like: jnp.asarray(leaf, jnp.result_type(like)), update, params)
    check_finite("the update", update)
    return update


def _info(c: jax.Array | None, linearized_violation: jax.Array, iterations: jax.Array, istop: jax.Array,
          conda: jax.Array, violation: jax.Array | None = None) -> ProjectionInfo:
    violation = jnp.linalg.norm(c) if violation is None else violation
    return ProjectionInfo(violation, linearized_violation, jnp.asarray(iterations, jnp.int32),
                          jnp.asarray(istop, jnp.int32), conda, jnp.full([], -1, jnp.int32))


def _unprojected_info(dtype: Any) -> ProjectionInfo:
    nan = jnp.full([], jnp.nan, dtype)
    return ProjectionInfo(nan, nan, jnp.zeros([], jnp.int32), jnp.full([], NOT_PROJECTED, jnp.int32), nan,
                          jnp.full([], -1, jnp.int32))


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


def _check_selection(constraint: Selection, params: Any, constraint_args: dict) -> None:
    if constraint_args:
        raise ValueError(f"a Selection takes no constraint arguments, got {sorted(constraint_args)}")
    constraint.check_params(params)
