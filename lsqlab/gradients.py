"""The *gradients* half: differentiation rules for x* = LstSq(A, b, damp), written once for any solver.

A solver is any function ``solver(op, b, damp, x0, options) -> (x, info)`` that returns
LstSq(A, b, damp) (the damped solution, or the minimum-norm least-squares solution for damp = 0).
:func:`solve_lstsq` wraps it in ``jax.custom_jvp`` with one JVP rule; JAX obtains reverse mode by
transposing that rule, because every solve applied to a tangent is a ``lax.custom_linear_solve`` with a
symmetric operator (its transpose is itself). Forward mode, reverse mode, ``vmap`` and higher
derivatives (Hessian-vector products) all come from the one rule.

With r = b - A x*, N = A^T A + damp^2 I, G = A A^T + damp^2 I and a dot marking a tangent:

Normal form (tall or square A, or ``assume_full_rank=False``; exact where N is invertible):
    x' = N^{-1} [ A^T (b' - A' x*) + A'^T r - 2 damp damp' x* ]
    Reverse mode: s = N^{-1} g costs two solves (p = LstSq(A^T, g), s = LstSq(A, p)) for damp = 0
    and one for damp > 0 (s = (g - A^T p) / damp^2); then db = A s = p, dA = r s^T - A s x*^T,
    ddamp = -2 damp <s, x*>.

Gram form (wide A with ``assume_full_rank=True``; exact where G is invertible): x* = A^T y,
    y = G^{-1} b (y = r / damp^2 for damp > 0, y = LstSq(A^T, x*) for damp = 0),
    y' = G^{-1} [ b' - A' x* - A A'^T y - 2 damp damp' y ],   x' = A'^T y + A^T y'.

Any rank, damp = 0 (``assume_full_rank=False``): the derivative of the pseudo-inverse at constant
rank (Golub & Pereyra 1973), N^{-1} read as the pseudo-inverse N^+ = A^+ A^{+T}:
    x' = N^+ [ A^T (b' - A' x*) + A'^T r ] + (I - A^+ A) A'^T t,   t = LstSq(A^T, x*).

Higher derivatives differentiate the ``custom_linear_solve`` of N (or G), which is exact where that
operator is invertible; in the rank-deficient undamped case only first derivatives are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lsqlab.operators import Apply, LinearMap, linear_map

Solver = Callable[..., tuple[jax.Array, Any]]  # (op, b, damp, x0, options) -> (x, info)


@dataclass(frozen=True)
class RuleConfig:
    """Static data of one differentiable solve.

    ``damp_kind`` is "zero" or "positive" when damp is a known Python number (one branch is
    compiled), "traced" otherwise (the branch is chosen at run time).
    """

    solver: Solver
    forward: Hashable
    backward: Hashable
    shape: tuple[int, int]
    assume_full_rank: bool
    damp_kind: str


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def solve_lstsq(apply: Apply, config: RuleConfig, params: Any, b: jax.Array, damp: jax.Array,
                x0: jax.Array | None, preconditioner: Any = None) -> tuple[jax.Array, Any]:
    """x* = LstSq(A, b, damp) with A v = apply(params, v), differentiable in params, b and damp.

    ``x0`` and ``preconditioner`` change how the solver gets there, not x*: they get no tangent.
    """
    op = linear_map(apply, params, config.shape, b.dtype, preconditioner)
    return config.solver(op, b, damp, x0, config.forward)


@solve_lstsq.defjvp
def _solve_lstsq_jvp(apply: Apply, config: RuleConfig, primals: tuple, tangents: tuple):
    params, b, damp, x0, preconditioner = primals
    dparams, db, ddamp, _, _ = tangents
    x, info = solve_lstsq(apply, config, params, b, damp, x0, preconditioner)
    op = linear_map(apply, params, config.shape, b.dtype, preconditioner)

    def da_mv(v: jax.Array) -> jax.Array:  # A' v
        return jax.jvp(lambda p: apply(p, v), (params,), (dparams,))[1]

    def da_rmv(u: jax.Array) -> jax.Array:  # A'^T u
        return jax.jvp(lambda p: linear_map(apply, p, config.shape, b.dtype).rmv(u), (params,), (dparams,))[1]

    rules = _Rules(op, damp, config)
    m, n = config.shape
    if m < n and config.assume_full_rank:
        y = rules.gram_multiplier(x, b - op.mv(x))
        w = db - da_mv(x) - op.mv(da_rmv(y)) - 2 * damp * ddamp * y
        dx = da_rmv(y) + op.rmv(rules.solve_normal(op.T, w))
    else:
        r = b - op.mv(x)
        v = op.rmv(db - da_mv(x)) + da_rmv(r) - 2 * damp * ddamp * x
        dx = rules.solve_normal(op, v)
        if not config.assume_full_rank and config.damp_kind != "positive":
            dx = dx + rules.project_out_of_row_space(da_rmv(rules.rank_correction_vector(x)))
    return (x, info), (dx, _zero_tangents(info))


class _Rules:
    """The solves the JVP rule needs, all with the backward options."""

    def __init__(self, op: LinearMap, damp: jax.Array, config: RuleConfig):
        self.op, self.damp, self.config = op, damp, config

    def _lstsq(self, op: LinearMap, rhs: jax.Array, damp: jax.Array | float) -> jax.Array:
        return self.config.solver(op, rhs, damp, None, self.config.backward)[0]

    def _by_damp(self, damped: Callable[[], jax.Array], undamped: Callable[[], jax.Array]) -> jax.Array:
        kind = self.config.damp_kind
        if kind == "positive":
            return damped()
        if kind == "zero":
            return undamped()
        return lax.cond(self.damp > 0, damped, undamped)

    def _safe_damp2(self) -> jax.Array:
        return jnp.where(self.damp > 0, self.damp**2, 1)

    def normal_inverse(self, op: LinearMap, v: jax.Array) -> jax.Array:
        """(A^T A + damp^2 I)^+ v from p = LstSq(A^T, v, damp): (v - A^T p)/damp^2, or LstSq(A, p)."""
        p = self._lstsq(op.T, v, self.damp)
        return self._by_damp(lambda: (v - op.rmv(p)) / self._safe_damp2(),
                             lambda: self._lstsq(op, p, 0.0))

    def solve_normal(self, op: LinearMap, v: jax.Array) -> jax.Array:
        """N^+ v as a symmetric ``custom_linear_solve``: transposable, and differentiable in A and damp."""
        damp = self.damp
        return lax.custom_linear_solve(
            lambda w: op.rmv(op.mv(w)) + damp**2 * w, v,
            lambda _, rhs: self.normal_inverse(op, rhs), symmetric=True,
        )

    def gram_multiplier(self, x: jax.Array, r: jax.Array) -> jax.Array:
        """y = (A A^T + damp^2 I)^{-1} b with x* = A^T y: r / damp^2, or LstSq(A^T, x*) for damp = 0."""
        return self._by_damp(lambda: r / self._safe_damp2(),
                             lambda: self._lstsq(self.op.T, x, 0.0))

    def rank_correction_vector(self, x: jax.Array) -> jax.Array:
        """t = LstSq(A^T, x*) = A^{+T} x* for damp = 0 (zero when damp > 0, where no correction is due)."""
        return self._by_damp(lambda: jnp.zeros(self.op.shape[0], x.dtype),
                             lambda: self._lstsq(self.op.T, x, 0.0))

    def project_out_of_row_space(self, w: jax.Array) -> jax.Array:
        """(I - A^+ A) w = w - LstSq(A, A w): the symmetric projector onto null(A), transposable."""
        op = self.op
        return lax.custom_linear_solve(
            lambda z: z, w, lambda _, z: z - self._lstsq(op, op.mv(z), 0.0), symmetric=True,
        )


def _zero_tangents(tree: Any) -> Any:
    """Zero tangents for diagnostics: float0 for integer leaves, as JAX requires."""
    return jax.tree.map(
        lambda a: jnp.zeros_like(a) if jnp.issubdtype(a.dtype, jnp.inexact) else np.zeros(a.shape, jax.dtypes.float0),
        tree,
    )
