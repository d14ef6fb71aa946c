"""CGLS: conjugate gradients on the normal equations (A^T A + damp^2 I) x = A^T b, for comparison.

In exact arithmetic its iterates are LSQR's: each minimises ||r_k|| over the Krylov space
K_k(A^T A, A^T b), so ||r_k|| falls monotonically while ||A^T r_k|| (the optimality measure) may
rise and fall. LSMR minimises ||A^T r_k|| instead, so that measure falls monotonically and stopping
early is safe. Both converge at a rate set by cond(A^T A) = cond(A)^2. Same signature and ``istop``
codes as :func:`lsqlab.lsmr.lsmr` (0: x = 0 is a solution; 1: ||r|| <= btol ||b|| + atol ||A|| ||x||, r the
stacked residual [b - A x; -damp x]; 2: ||A^T r - damp^2 x|| <= atol ||A|| ||r||; 7: iteration limit;
8: NaN/Inf), so it can be passed to :func:`lsqlab.lstsq` as ``solver=cgls`` and differentiated by the same rules.

    s_k = A^T r_k - damp^2 x_k,  alpha = ||s_k||^2 / (||A p_k||^2 + damp^2 ||p_k||^2),
    x_{k+1} = x_k + alpha p_k,  r_{k+1} = r_k - alpha A p_k,  p_{k+1} = s_{k+1} + (||s_{k+1}||^2 / ||s_k||^2) p_k.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lsqlab.lsmr import SolverTrace
from lsqlab.operators import LinearMap
from lsqlab.solver import LstSqInfo, SolverOptions


class _State(NamedTuple):
    itn: jax.Array
    istop: jax.Array
    x: jax.Array
    r: jax.Array
    s: jax.Array
    p: jax.Array
    gamma: jax.Array
    normr: jax.Array  # ||[r; damp x]||, the residual of the stacked problem
    norma2: jax.Array  # running sum of ||A p_k||^2 / ||p_k||^2: a lower estimate of ||A||_2^2


def _start(op: LinearMap, b: jax.Array) -> _State:
    s = op.rmv(b)
    gamma = jnp.dot(s, s)
    finite = jnp.isfinite(gamma)
    istop = jnp.where(finite, jnp.where(gamma == 0, 0, -1), 8).astype(jnp.int32)
    zero = jnp.zeros((), b.dtype)
    return _State(jnp.zeros((), jnp.int32), istop, jnp.zeros(op.shape[1], b.dtype), b, s, s, gamma,
                  jnp.linalg.norm(b), zero)


def _step(op: LinearMap, damp: jax.Array, atol: float, btol: float, normb: jax.Array, maxiter: int):
    def step(st: _State) -> _State:
        itn = st.itn + 1
        q = op.mv(st.p)
        pp = jnp.dot(st.p, st.p)
        delta = jnp.dot(q, q) + damp**2 * pp
        safe = delta > 0
        alpha = jnp.where(safe, st.gamma / jnp.where(safe, delta, 1), 0)
        x = st.x + alpha * st.p
        r = st.r - alpha * q
        s = op.rmv(r) - damp**2 * x
        gamma = jnp.dot(s, s)
        p = s + jnp.where(st.gamma > 0, gamma / jnp.where(st.gamma > 0, st.gamma, 1), 0) * st.p
        norma2 = jnp.maximum(st.norma2, jnp.where(pp > 0, delta / jnp.where(pp > 0, pp, 1), 0))
        normr = jnp.sqrt(jnp.dot(r, r) + damp**2 * jnp.dot(x, x))
        normx = jnp.linalg.norm(x)
        consistent = normr <= btol * normb + atol * jnp.sqrt(norma2) * normx  # test 1: a consistent system
        converged = jnp.sqrt(gamma) <= atol * jnp.sqrt(norma2) * normr  # test 2: least squares
        istop = jnp.where(consistent, 1, jnp.where(converged, 2, jnp.where(itn >= maxiter, 7, -1)))
        finite = jnp.isfinite(gamma) & jnp.isfinite(delta)
        new = _State(itn, istop.astype(jnp.int32), x, r, s, p, gamma, normr, norma2)
        kept = jax.tree.map(lambda a, b_: jnp.where(finite, a, b_), new, st)
        return kept._replace(itn=itn, istop=jnp.where(finite, istop, 8).astype(jnp.int32))

    return step


def cgls(op: LinearMap, b: jax.Array, damp: jax.Array | float = 0.0, x0: jax.Array | None = None,
         options: SolverOptions = SolverOptions()) -> tuple[jax.Array, LstSqInfo]:
    """CG on the normal equations from x = 0 (``x0`` must be None: the minimum-norm solution needs it)."""
    if x0 is not None:
        raise ValueError("cgls starts from x = 0 (the minimum-norm solution); x0 is not supported")
    damp = jnp.asarray(damp, b.dtype)
    maxiter = options.iteration_limit(*op.shape)
    step = _step(op, damp, options.atol, options.btol, jnp.linalg.norm(b), maxiter)
    final = lax.while_loop(lambda st: st.istop < 0, step, _start(op, b))
    norma = jnp.sqrt(final.norma2)
    info = LstSqInfo(final.itn, final.istop, final.normr, jnp.sqrt(final.gamma), norma, jnp.full((), jnp.nan, b.dtype),
                     jnp.linalg.norm(final.x))
    return final.x, info


def cgls_trace(op: LinearMap, b: jax.Array, damp: jax.Array | float, iterations: int,
               options: SolverOptions = SolverOptions()) -> SolverTrace:
    """Exactly ``iterations`` CGLS steps, ignoring the stop test, with every iterate recorded."""
    damp = jnp.asarray(damp, b.dtype)
    step = _step(op, damp, options.atol, options.btol, jnp.linalg.norm(b), iterations + 1)

    def recorded(st: _State, _):
        new = step(st)
        return new._replace(istop=jnp.full((), -1, jnp.int32)), (new.x, new.normr, jnp.sqrt(new.gamma), new.istop)

    _, (xs, normr, normar, istop) = lax.scan(recorded, _start(op, b), length=iterations)
    return SolverTrace(xs, normr, normar, istop)
