"""The *gradients* half: differentiation rules for x* = LstSq(A, b, damp), written once for any solver.

A solver is any :class:`lsqlab.solver.Solver`, ``solver(op, b, damp, x0, options) -> (x, info)``, that
returns LstSq(A, b, damp) (the damped solution, or the minimum-norm least-squares solution for damp = 0).
:func:`solve_lstsq` wraps it in ``jax.custom_jvp`` with one JVP rule; JAX obtains reverse mode by
transposing that rule, because every solve applied to a tangent is a ``lax.custom_linear_solve`` with a
symmetric operator (its transpose is itself). Forward mode, reverse mode, ``vmap`` and higher
derivatives (Hessian-vector products) all come from the one rule.

With r = b - A x*, N = A^T A + damp^2 I, G = A A^T + damp^2 I and a dot marking a tangent:

Normal form (tall or square A):
    x' = N^{-1} [ A^T (b' - A' x*) + A'^T r - 2 damp damp' x* ]
    Reverse mode: s = N^{-1} g, then db = A s = p, dA = r s^T - A s x*^T, ddamp = -2 damp <s, x*>.

N^{-1} v for damp != 0 is one solve with the stacked operator: w = LstSq([A^T, damp I], v, 0), the
minimum-norm solution of A^T w_1 + damp w_2 = v, is [A; damp I] N^{-1} v, so N^{-1} v = w_2 / damp
(and w_1 = p). It is exact at any rank and loses no accuracy as damp -> 0: measured on a tall 40x10
A at tolerance 1e-12, its relative error stays near 1e-15 for damp from 1e-10 to 10. The shortcut
s = (v - A^T p) / damp^2 with p = LstSq(A^T, v, damp) is the same solve but subtracts two nearly
equal vectors, v - A^T p = damp^2 s: a backward solve with relative error tol gives s with relative
error about tol (||A|| / damp)^2 (1e-2 at damp 1e-6, 5e5 at damp 1e-10). For damp = 0,
N^+ v = A^+ (A^{+T} v) (p = LstSq(A^T, v, 0), s = LstSq(A, p, 0)): exact for full column rank, and
the pseudo-inverse N^+ = A^+ A^{+T} at any rank. damp is data: the branch is taken by its value at
run time (``lax.cond``; both branches under ``vmap`` over damp).

Gram form (wide A with ``assume_full_rank=True``; full row rank when damp = 0, any rank otherwise):
    x* = A^T y,  y = G^{-1} b  (the same stacked solve with [A, damp I]; LstSq(A^T, x*, 0) at damp = 0),
    y' = G^{-1} [ b' - A' x* - A A'^T y - 2 damp damp' y ],   x' = A'^T y + A^T y',
with G^{-1} the inverse above applied to A^T. y comes from a solve, not from r / damp^2, which
cancels where r is O(damp^2).

Any rank (``assume_full_rank=False``), with c = t = LstSq(A^T, x*, 0) at damp = 0 and c = y otherwise
(r = damp^2 y; y from whichever of the stacked solve and (b - A x*) / damp^2 has the smaller error
bound, see ``_Rules.gram_multiplier_any_rank``):
    x' = N^{-1} P [ A^T (b' - A' x*) + A'^T r - 2 damp damp' x* ] + (I - A^+ A) A'^T c,
P the projector onto row(A). At damp = 0 this is the derivative of the pseudo-inverse at constant
rank (Golub & Pereyra 1973), N^{-1} P read as N^+ = A^+ A^{+T}; at damp != 0 it is the exact
derivative, with the row-space part (db, ddamp) kept apart from the O(1 / damp^2) null-space part so
that the latter's rounding does not swamp the former. (The derivative in damp is still ill-posed for
a rank-deficient matrix stored in floating point when damp is tiny: its rounding gives null(A)
singular values of order eps ||A||.)

Higher derivatives differentiate the ``custom_linear_solve`` of N (or G), which is exact where that
operator is invertible; in the rank-deficient undamped case only first derivatives are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lsqlab.operators import Apply, LinearMap, frobenius_norm, linear_map
from lsqlab.solver import Solver, SolverOptions


@dataclass(frozen=True)
class RuleConfig:
    """Static data of one differentiable solve (damp is data: each branch on it is taken at run time)."""

    solver: Solver
    forward: SolverOptions
    backward: SolverOptions
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

    rules = _Rules(op, damp, config)
    m, n = config.shape

    def normal_v(r: jax.Array) -> jax.Array:
        return op.rmv(db - da_mv(x)) + da_rmv(r) - 2 * damp * ddamp * x

    def gram_form() -> jax.Array:  # wide, full row rank: x* = A^T y
        y = rules.gram_multiplier(x, b)
        w = db - da_mv(x) - op.mv(da_rmv(y)) - 2 * damp * ddamp * y
        return da_rmv(y) + op.rmv(rules.solve_normal(op.T, w))

    if not config.assume_full_rank:
        # c = y = (A A^T + damp^2 I)^{-1} b for damp > 0 (r = damp^2 y), t = A^{+T} x* for damp = 0
        c = lax.cond(damp != 0, lambda: rules.gram_multiplier_any_rank(x, b), lambda: rules.lstsq(op.T, x, 0.0))
        r = jnp.where(damp != 0, damp**2 * c, b - op.mv(x))
        dx = rules.solve_normal(op, normal_v(r), row_space_only=True) + rules.project_out_of_row_space(da_rmv(c))
    elif m < n:
        dx = gram_form()
    else:
        dx = rules.solve_normal(op, normal_v(b - op.mv(x)))
    return (x, info), (dx, _zero_tangents(info))


class _Rules:
    """The solves the JVP rule needs, all with the backward options."""

    def __init__(self, op: LinearMap, damp: jax.Array, config: RuleConfig):
        self.op, self.damp, self.config = op, damp, config

    def lstsq(self, op: LinearMap, rhs: jax.Array, damp: jax.Array | float,
              options: SolverOptions | None = None) -> jax.Array:
        return self.config.solver(op, rhs, damp, None, options or self.config.backward)[0]

    def stacked_options(self) -> SolverOptions:
        """The backward options for the consistent system [A^T, damp I] w = v: stop on
        ||residual|| <= btol ||v|| alone (atol = 0: test 1's term atol ||B|| ||w|| grows with the
        O(1 / damp) part of w and would stop it with that part wrong), and no conlim (its condition
        number is up to ||A|| / damp by construction, no reason to stop)."""
        return replace(self.config.backward, atol=0.0, conlim=0.0)

    def normal_inverse(self, op: LinearMap, v: jax.Array) -> jax.Array:
        """(A^T A + damp^2 I)^{-1} v: w_2 / damp from w = LstSq([A^T, damp I], v, 0) for damp > 0;
        A^+ (A^{+T} v) = N^+ v for damp = 0. With ``op`` = A^T: (A A^T + damp^2 I)^{-1} v."""

        def damped() -> jax.Array:
            w = self.lstsq(stacked_with_damping(op, self.damp).T, v, 0.0, self.stacked_options())
            return w[op.shape[0]:] / jnp.where(self.damp != 0, self.damp, 1)

        return lax.cond(self.damp != 0, damped, lambda: self.lstsq(op, self.lstsq(op.T, v, 0.0), 0.0))

    def solve_normal(self, op: LinearMap, v: jax.Array, row_space_only: bool = False) -> jax.Array:
        """N^{-1} v as a symmetric ``custom_linear_solve``: transposable, and differentiable in A and damp.
        ``row_space_only``: N^{-1} P v, P the projector onto row(A) (N^+ v for damp = 0); the null-space
        part is then left out, so that the row-space part of a cotangent is not swamped by the rounding
        of an O(1 / damp^2) null-space part."""
        damp = self.damp

        def inverse(rhs: jax.Array) -> jax.Array:
            if not row_space_only:
                return self.normal_inverse(op, rhs)
            return lax.cond(damp != 0, lambda: self.normal_inverse(op, rhs - self.null_part(rhs)),
                            lambda: self.normal_inverse(op, rhs))

        return lax.custom_linear_solve(
            lambda w: op.rmv(op.mv(w)) + damp**2 * w, v, lambda _, rhs: inverse(rhs), symmetric=True,
        )

    def null_part(self, z: jax.Array) -> jax.Array:
        """(I - A^+ A) z = z - LstSq(A, A z, 0)."""
        return z - self.lstsq(self.op, self.op.mv(z), 0.0)

    def gram_multiplier(self, x: jax.Array, b: jax.Array) -> jax.Array:
        """y = (A A^T + damp^2 I)^{-1} b, so that x* = A^T y and r = damp^2 y: G^{-1} b for damp > 0
        (one solve, no cancellation), LstSq(A^T, x*, 0) for damp = 0 (full row rank)."""
        op = self.op
        return lax.cond(self.damp != 0, lambda: self.normal_inverse(op.T, b), lambda: self.lstsq(op.T, x, 0.0))

    def gram_multiplier_any_rank(self, x: jax.Array, b: jax.Array) -> jax.Array:
        """y = (A A^T + damp^2 I)^{-1} b, damp > 0, at any rank, from the more accurate of two formulas:
        the solve with [A, damp I] (error about eps ||A|| ||y|| / damp: its O(1 / damp^2) part, on the
        complement of range(A), is tied to singular values damp) or (b - A x*) / damp^2 (error about
        eps (||b|| + ||A|| ||x*||) / damp^2: cancellation on range(A)). ||A||: Frobenius (an estimate for a function)."""
        op = self.op
        norm_a, damp = frobenius_norm(op, b.dtype), jnp.where(self.damp != 0, self.damp, 1)
        stacked, residual = self.normal_inverse(op.T, b), (b - op.mv(x)) / damp**2
        stacked_error = norm_a * jnp.linalg.norm(stacked) / damp
        residual_error = (jnp.linalg.norm(b) + norm_a * jnp.linalg.norm(x)) / damp**2
        return jnp.where(residual_error < stacked_error, residual, stacked)

    def project_out_of_row_space(self, w: jax.Array) -> jax.Array:
        """(I - A^+ A) w: the symmetric projector onto null(A), transposable."""
        return lax.custom_linear_solve(lambda z: z, w, lambda _, z: self.null_part(z), symmetric=True)


def stacked_with_damping(op: LinearMap, damp: jax.Array) -> LinearMap:
    """[A; damp I]: R^n -> R^(m + n), carrying A's preconditioner (and, for a matrix, the stacked matrix).
    For ``op`` = A^T (a transposed map) the preconditioner, which acts on A's domain, is dropped."""
    m, n = op.shape
    if op.transposed:
        op = op._replace(preconditioner=None, matrix=None)

    def mv(v: jax.Array) -> jax.Array:
        return jnp.concatenate([op.mv(v), damp * v])

    def rmv(u: jax.Array) -> jax.Array:
        return op.rmv(u[:m]) + damp * u[m:]

    matrix = None if op.matrix is None else jnp.concatenate([op.matrix, damp * jnp.eye(n, dtype=op.matrix.dtype)])
    return LinearMap(mv, rmv, (m + n, n), preconditioner=op.preconditioner, matrix=matrix)


def _zero_tangents(tree: Any) -> Any:
    """Zero tangents for diagnostics: float0 for integer leaves, as JAX requires."""
    return jax.tree.map(
        lambda a: jnp.zeros_like(a) if jnp.issubdtype(a.dtype, jnp.inexact) else np.zeros(a.shape, jax.dtypes.float0),
        tree,
    )
