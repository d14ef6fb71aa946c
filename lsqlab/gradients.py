"""The *gradients* half: differentiation rules for x* = LstSq(A, b, damp), written once for any solver.

A solver is any function ``solver(op, b, damp, x0, options) -> (x, info)`` that returns
LstSq(A, b, damp) (the damped solution, or the minimum-norm least-squares solution for damp = 0).
:func:`solve_lstsq` wraps it in ``jax.custom_jvp`` with one JVP rule; JAX obtains reverse mode by
transposing that rule, because every solve applied to a tangent is a ``lax.custom_linear_solve`` with a
symmetric operator (its transpose is itself). Forward mode, reverse mode, ``vmap`` and higher
derivatives (Hessian-vector products) all come from the one rule.

With r = b - A x*, N = A^T A + damp^2 I, G = A A^T + damp^2 I and a dot marking a tangent:

Normal form (tall or square A, or ``assume_full_rank=False``):
    x' = N^{-1} [ A^T (b' - A' x*) + A'^T r - 2 damp damp' x* ]
    Reverse mode: s = N^{-1} g, then db = A s = p, dA = r s^T - A s x*^T, ddamp = -2 damp <s, x*>.

N^{-1} v is never taken from the damped shortcut s = (v - A^T p) / damp^2 (p = LstSq(A^T, v, damp))
alone: v - A^T p = damp^2 s cancels catastrophically, so a backward solve with relative error tol
gives s with relative error about tol (||A|| / damp)^2 (1e5 at damp = 1e-5). Two branches, chosen
at run time by the value of damp against a Frobenius-norm estimate of A:
    damp >= ||A||:  s = (v - A^T p) / damp^2           one solve; exact at any rank, error <= 2 tol
    otherwise:      s = LstSq(A, p, 0) = A^+ G^{-1} A v  two solves; = N^{-1} v for full column rank
                                                         (push-through), no cancellation at any damp.
With ``assume_full_rank=False`` only the second branch is used; it gives N^{-1} P v, P the projector
onto the row space, and the null-space part is added separately (below).

Gram form (wide A with ``assume_full_rank=True``; full row rank): x* = A^T y,
    y = G^{-1} b = LstSq(A^T, x*, 0) (r / damp^2 in the shortcut branch),
    y' = G^{-1} [ b' - A' x* - A A'^T y - 2 damp damp' y ],   x' = A'^T y + A^T y',
with G^{-1} from the same two branches applied to A^T.

Any rank (``assume_full_rank=False``), with t = LstSq(A^T, x*, 0):
    x' = N^{-1} P [ A^T (b' - A' x*) + A'^T r - 2 damp damp' x* ] + (I - A^+ A) A'^T c,
    c = r / damp^2 (damp > 0: the null-space part of N^{-1} A'^T r, as N = damp^2 I there),
    c = t          (damp = 0: the derivative of the pseudo-inverse at constant rank, Golub & Pereyra
                    1973).
The row-space terms (db, ddamp) never divide by damp^2, so they stay exact as damp -> 0; the
null-space term is genuinely O(1 / damp^2) when A is rank-deficient. On a full-rank A with a tiny
damp this mode amplifies the backward tolerance by (||A|| / damp)^2: keep the default there.

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

from lsqlab.operators import Apply, LinearMap, frobenius_norm, linear_map

Solver = Callable[..., tuple[jax.Array, Any]]  # (op, b, damp, x0, options) -> (x, info)


@dataclass(frozen=True)
class RuleConfig:
    """Static data of one differentiable solve (damp is data: every branch on it is taken at run time)."""

    solver: Solver
    forward: Hashable
    backward: Hashable
    shape: tuple[int, int]
    assume_full_rank: bool


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

    rules = _Rules(op, damp, config, frobenius_norm(op, b.dtype))
    m, n = config.shape
    r = b - op.mv(x)
    if m < n and config.assume_full_rank:
        y = rules.gram_multiplier(x, r)
        w = db - da_mv(x) - op.mv(da_rmv(y)) - 2 * damp * ddamp * y
        dx = da_rmv(y) + op.rmv(rules.solve_normal(op.T, w))
    else:
        v = op.rmv(db - da_mv(x)) + da_rmv(r) - 2 * damp * ddamp * x
        dx = rules.solve_normal(op, v)
        if not config.assume_full_rank:
            dx = dx + rules.project_out_of_row_space(da_rmv(rules.null_space_vector(x, r)))
    return (x, info), (dx, _zero_tangents(info))


class _Rules:
    """The solves the JVP rule needs, all with the backward options."""

    def __init__(self, op: LinearMap, damp: jax.Array, config: RuleConfig, norm_a: jax.Array):
        self.op, self.damp, self.config = op, damp, config
        # The shortcut's error is tol (||A||^2 + damp^2) / damp^2 <= 2 tol here; exact at any rank.
        self.shortcut = config.assume_full_rank & (damp > 0) & (damp >= norm_a)

    def _lstsq(self, op: LinearMap, rhs: jax.Array, damp: jax.Array | float) -> jax.Array:
        return self.config.solver(op, rhs, damp, None, self.config.backward)[0]

    def _safe_damp2(self) -> jax.Array:
        return jnp.where(self.damp > 0, self.damp**2, 1)

    def normal_inverse(self, op: LinearMap, v: jax.Array) -> jax.Array:
        """(A^T A + damp^2 I)^{-1} v from p = LstSq(A^T, v, damp): (v - A^T p) / damp^2 where damp >= ||A||,
        else A^+ p (exact for full column rank; the row-space part N^{-1} P v at any rank)."""
        p = self._lstsq(op.T, v, self.damp)
        return lax.cond(self.shortcut, lambda: (v - op.rmv(p)) / self._safe_damp2(),
                        lambda: self._lstsq(op, p, 0.0))

    def solve_normal(self, op: LinearMap, v: jax.Array) -> jax.Array:
        """N^+ v as a symmetric ``custom_linear_solve``: transposable, and differentiable in A and damp."""
        damp = self.damp
        return lax.custom_linear_solve(
            lambda w: op.rmv(op.mv(w)) + damp**2 * w, v,
            lambda _, rhs: self.normal_inverse(op, rhs), symmetric=True,
        )

    def gram_multiplier(self, x: jax.Array, r: jax.Array) -> jax.Array:
        """y = (A A^T + damp^2 I)^{-1} b with x* = A^T y: r / damp^2 where damp >= ||A||, else
        LstSq(A^T, x*, 0) (full row rank; no cancellation as damp -> 0)."""
        return lax.cond(self.shortcut, lambda: r / self._safe_damp2(),
                        lambda: self._lstsq(self.op.T, x, 0.0))

    def null_space_vector(self, x: jax.Array, r: jax.Array) -> jax.Array:
        """c with (I - A^+ A) A'^T c the null-space part of x': r / damp^2 for damp > 0,
        t = LstSq(A^T, x*, 0) = A^{+T} x* for damp = 0."""
        return lax.cond(self.damp > 0, lambda: r / self._safe_damp2(),
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
