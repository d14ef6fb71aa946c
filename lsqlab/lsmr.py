"""LSMR (Fong & Saunders, 2011) as a JAX ``while_loop``: the *values* half of the lab.

LSMR solves ``min ||A x - b||^2 + damp^2 ||x||^2`` with one product ``A v`` and one ``A^T u``
per iteration. It runs Golub–Kahan bidiagonalisation

    beta_1 u_1 = b,   alpha_1 v_1 = A^T u_1,
    beta_{k+1} u_{k+1} = A v_k - alpha_k u_k,   alpha_{k+1} v_{k+1} = A^T u_{k+1} - beta_{k+1} v_k,

and applies MINRES to the normal equations ``(A^T A + damp^2 I) x = A^T b`` in the Krylov basis
``V_k`` through two sequences of Givens rotations, so ``||A^T r_k||`` decreases monotonically.
Memory is a handful of vectors, whatever the number of iterations.

Stopping rules and ``istop`` codes follow SciPy's ``scipy.sparse.linalg.lsmr`` so that iteration
counts can be compared one to one; code 8 is ours and marks a non-finite value met during the run.
The solution space R^n may be a pytree of arrays (``op.mv`` takes one, ``op.rmv`` returns one; b
stays 1-D): its vectors x, v, h, hbar are then updated leaf by leaf and never concatenated, so each
keeps its leaf's sharding (a row-sharded weight matrix is never gathered); a single array is the
same program as before.
This module is not differentiable by itself: :mod:`lsqlab.gradients` supplies the adjoint rules.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lsqlab.operators import LinearMap, golub_kahan_products
from lsqlab.solver import NOT_TRUSTED, LstSqInfo, SolverOptions


class _State(NamedTuple):
    itn: jax.Array
    istop: jax.Array  # -1 while running
    x: Any  # x, v, h, hbar: in the solution space (an array or a pytree like op.rmv's output)
    u: jax.Array
    v: Any
    h: Any
    hbar: Any
    alpha: jax.Array
    alphabar: jax.Array
    zeta: jax.Array
    zetabar: jax.Array
    rho: jax.Array
    rhobar: jax.Array
    cbar: jax.Array
    sbar: jax.Array
    betadd: jax.Array
    betad: jax.Array
    rhodold: jax.Array
    tautildeold: jax.Array
    thetatilde: jax.Array
    d: jax.Array
    norma2: jax.Array
    maxrbar: jax.Array
    minrbar: jax.Array
    normr: jax.Array
    normar: jax.Array
    norma: jax.Array
    conda: jax.Array
    normx: jax.Array


def givens(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Rotation (c, s, r) with [c s; -s c] [a; b] = [r; 0] and r = hypot(a, b) >= 0."""
    r = jnp.hypot(a, b)
    nonzero = r > 0
    safe_r = jnp.where(nonzero, r, 1)
    return jnp.where(nonzero, a / safe_r, 0), jnp.where(nonzero, b / safe_r, 0), r


def scaled_norm(v: Any) -> jax.Array:
    """||v|| computed as s ||v / s||, s the power of two nearest max |v|: no square underflows or
    overflows (A scaled by 1e-160), and, s being a power of two, the same bits as ||v|| otherwise.
    v: an array or a pytree of arrays (the norm of all its entries)."""
    largest = [jnp.max(jnp.abs(leaf), initial=0) for leaf in jax.tree.leaves(v)]
    scale = _power_of_two(largest[0] if len(largest) == 1 else jnp.max(jnp.stack(largest)))
    return scale * tree_norm(jax.tree.map(lambda leaf: leaf / scale, v))


def tree_norm(v: Any) -> jax.Array:
    """||v||_2 over all entries of an array or a pytree of arrays, sqrt(sum_leaves <v_i, v_i>) (for
    one array: jnp.linalg.norm itself); leaf by leaf, so that no leaf leaves its devices."""
    leaves = jax.tree.leaves(v)
    if len(leaves) == 1:
        return jnp.linalg.norm(leaves[0])
    return jnp.sqrt(sum(jnp.vdot(leaf, leaf) for leaf in leaves))


def _where(condition: jax.Array, x: Any, y: Any) -> Any:
    return jax.tree.map(lambda xi, yi: jnp.where(condition, xi, yi), x, y)


def _normalise(w: Any, norm: jax.Array) -> Any:
    return jax.tree.map(lambda leaf: jnp.where(norm > 0, leaf / jnp.where(norm > 0, norm, 1), leaf), w)


def lsmr(
    op: LinearMap,
    b: jax.Array,
    damp: jax.Array | float = 0.0,
    x0: Any = None,
    options: SolverOptions = SolverOptions(),
) -> tuple[Any, LstSqInfo]:
    """Solve ``min ||A x - b||^2 + damp^2 ||x||^2`` for 1-D ``b``; from ``x0 = 0`` the minimum-norm solution.
    x (and x0) live where ``op.rmv`` maps to: an array, or a pytree of arrays (``op.shape[1]`` its
    number of entries) that keeps each leaf's sharding.

    The solve runs on b / s for s the power of two nearest ||b|| (exact), so that no square of a norm
    overflows or underflows whatever b's scale (a cotangent of 1e160 in a backward solve, say).
    """
    maxiter = options.iteration_limit(*op.shape)
    scale = _power_of_two(scaled_norm(b))
    b = b / scale
    step = _iteration(op, b, damp, options, maxiter)
    start = _start(op, b, damp, None if x0 is None else jax.tree.map(lambda leaf: leaf / scale, x0))
    final = lax.while_loop(lambda s: (s.istop < 0) & (s.itn < maxiter), step, start)
    info = _info(final)
    x = jax.tree.map(lambda leaf: leaf * scale, final.x)
    return x, info._replace(normr=info.normr * scale, normar=info.normar * scale, normx=info.normx * scale)


def _power_of_two(value: jax.Array) -> jax.Array:
    """2^e with value = f 2^e, 1/2 <= f < 1 (1 for value 0 or non-finite)."""
    ok = (value > 0) & jnp.isfinite(value)
    exponent = jnp.frexp(jnp.where(ok, value, 1))[1]
    return jnp.where(ok, jnp.ldexp(jnp.ones_like(value), exponent), 1)


def lsmr_fixed_iterations(
    op: LinearMap, b: jax.Array, damp: jax.Array | float, iterations: int, options: SolverOptions = SolverOptions()
) -> tuple[jax.Array, LstSqInfo]:
    """The same iteration as a ``lax.scan`` of exactly ``iterations`` steps (frozen once a stop test
    holds), so that JAX can differentiate it by unrolling: the baseline the adjoint rules replace."""
    step = _iteration(op, b, damp, options, iterations)

    def frozen_step(s: _State, _) -> tuple[_State, None]:
        new = step(s)
        return jax.tree.map(lambda old, nxt: jnp.where(s.istop < 0, nxt, old), s, new), None

    final, _ = lax.scan(frozen_step, _start(op, b, damp, None), length=iterations)
    return final.x, _info(final)


class SolverTrace(NamedTuple):
    """Per-iteration record of a solve, for plots: row k is after iteration k + 1."""

    xs: jax.Array  # (iterations, n) iterates
    normr: jax.Array  # (iterations,) ||r_k|| estimates
    normar: jax.Array  # (iterations,) ||A^T r_k - damp^2 x_k|| estimates
    istop: jax.Array  # (iterations,) stop code that held after each iteration (-1: none yet)


def lsmr_trace(
    op: LinearMap, b: jax.Array, damp: jax.Array | float, iterations: int, options: SolverOptions = SolverOptions()
) -> SolverTrace:
    """Run exactly ``iterations`` LSMR steps, ignoring the stop tests, and record every iterate."""
    step = _iteration(op, b, damp, options, iterations)

    def recorded_step(s: _State, _) -> tuple[_State, tuple]:
        new = step(s)
        return new._replace(istop=jnp.full((), -1, jnp.int32)), (new.x, new.normr, new.normar, new.istop)

    _, (xs, normr, normar, istop) = lax.scan(recorded_step, _start(op, b, damp, None), length=iterations)
    return SolverTrace(xs, normr, normar, istop)


def _info(final: _State) -> LstSqInfo:
    istop = jnp.where(final.istop < 0, 7, final.istop).astype(jnp.int32)
    return LstSqInfo(final.itn, istop, final.normr, final.normar, final.norma, final.conda, final.normx)


def _start(op: LinearMap, b: jax.Array, damp: jax.Array | float, x0: Any) -> _State:
    """Initial bidiagonalisation step: beta_1 u_1 = b - A x0, alpha_1 v_1 = A^T u_1."""
    dtype = b.dtype
    normb = scaled_norm(b)
    u = b if x0 is None else b - op.mv(x0)
    beta = scaled_norm(u)
    u = _normalise(u, beta)
    v = op.rmv(u)
    zeros = jax.tree.map(jnp.zeros_like, v)
    x = zeros if x0 is None else x0
    alpha = jnp.where(beta > 0, scaled_norm(v), 0)
    v = _where(beta > 0, _normalise(v, alpha), zeros)
    finite = jnp.isfinite(beta) & jnp.isfinite(alpha)
    trivially_done = (alpha == 0) | (beta == 0) | (normb == 0)
    istop = jnp.where(finite, jnp.where(trivially_done, 0, -1), 8)
    x = _where((normb == 0) | ~finite, zeros, x)
    zero = jnp.zeros((), dtype)
    one = jnp.ones((), dtype)
    return _State(
        itn=jnp.zeros((), jnp.int32), istop=istop.astype(jnp.int32), x=x, u=u, v=v, h=v,
        hbar=zeros, alpha=alpha, alphabar=alpha, zeta=zero, zetabar=alpha * beta,
        rho=one, rhobar=one, cbar=one, sbar=zero, betadd=beta, betad=zero, rhodold=one,
        tautildeold=zero, thetatilde=zero, d=zero, norma2=alpha**2, maxrbar=zero,
        minrbar=jnp.asarray(1e100 if dtype == jnp.float64 else 1e30, dtype),
        normr=beta, normar=alpha * beta, norma=alpha, conda=one, normx=tree_norm(x),
    )


def _iteration(op: LinearMap, b: jax.Array, damp: jax.Array | float, options: SolverOptions,
               maxiter: int) -> Callable[[_State], _State]:
    """One LSMR step (bidiagonalisation, rotations, update of x and of the estimates, stop tests)."""
    dtype = b.dtype
    damp = jnp.asarray(damp, dtype)
    normb = scaled_norm(b)
    ctol = 1.0 / options.conlim if options.conlim > 0 else 0.0
    atol, btol = options.atol, options.btol

    def step(s: _State) -> _State:
        itn = s.itn + 1
        # Golub–Kahan: beta u <- A v - alpha u ; alpha v <- A^T u - beta v.
        # A^T u = (A^T t) / beta for t = beta u, so both products can share one pass over A.
        t, at_t = golub_kahan_products(op, s.v, s.alpha, s.u)
        beta = jnp.linalg.norm(t)
        u = _normalise(t, beta)
        v_new = jax.tree.map(lambda at_ti, vi: at_ti - beta * vi, _normalise(at_t, beta), s.v)
        alpha_new = tree_norm(v_new)
        v = _where(beta > 0, _normalise(v_new, alpha_new), s.v)
        alpha = jnp.where(beta > 0, alpha_new, s.alpha)

        # Rotation Qhat eliminating damp, then Q turning the bidiagonal B_k into R_k.
        chat, shat, alphahat = givens(s.alphabar, damp)
        c, sn, rho = givens(alphahat, beta)
        thetanew = sn * alpha
        alphabar = c * alpha
        # Rotation Qbar turning R_k^T into Rbar_k.
        thetabar = s.sbar * rho
        rhotemp = s.cbar * rho
        cbar, sbar, rhobar = givens(s.cbar * rho, thetanew)
        zeta = cbar * s.zetabar
        zetabar = -sbar * s.zetabar
        # Update the search directions and x.
        hbar = jax.tree.map(lambda hi, hbari: hi - (thetabar * rho / (s.rho * s.rhobar)) * hbari, s.h, s.hbar)
        x = jax.tree.map(lambda xi, hbari: xi + (zeta / (rho * rhobar)) * hbari, s.x, hbar)
        h = jax.tree.map(lambda vi, hi: vi - (thetanew / rho) * hi, v, s.h)

        # Estimate ||r|| from the rotated right-hand side.
        betaacute = chat * s.betadd
        betacheck = -shat * s.betadd
        betahat = c * betaacute
        betadd = -sn * betaacute
        ctildeold, stildeold, rhotildeold = givens(s.rhodold, thetabar)
        thetatilde = stildeold * rhobar
        rhodold = ctildeold * rhobar
        betad = -stildeold * s.betad + ctildeold * betahat
        tautildeold = (s.zeta - s.thetatilde * s.tautildeold) / rhotildeold
        taud = (zeta - thetatilde * tautildeold) / rhodold
        d = s.d + betacheck**2
        normr = jnp.sqrt(d + (betad - taud) ** 2 + betadd**2)

        # Estimates of ||A|| and cond(A).
        norma = jnp.sqrt(s.norma2 + beta**2)
        norma2 = s.norma2 + beta**2 + alpha**2
        maxrbar = jnp.maximum(s.maxrbar, s.rhobar)
        minrbar = jnp.where(itn > 1, jnp.minimum(s.minrbar, s.rhobar), s.minrbar)
        conda = jnp.maximum(maxrbar, rhotemp) / jnp.minimum(minrbar, rhotemp)

        normar = jnp.abs(zetabar)
        normx = tree_norm(x)
        istop = _stop_code(itn, maxiter, normr, normar, norma, conda, normx, normb, atol, btol, ctol)
        new = _State(
            itn=itn, istop=istop, x=x, u=u, v=v, h=h, hbar=hbar, alpha=alpha, alphabar=alphabar,
            zeta=zeta, zetabar=zetabar, rho=rho, rhobar=rhobar, cbar=cbar, sbar=sbar,
            betadd=betadd, betad=betad, rhodold=rhodold, tautildeold=tautildeold,
            thetatilde=thetatilde, d=d, norma2=norma2, maxrbar=maxrbar, minrbar=minrbar,
            normr=normr, normar=normar, norma=norma, conda=conda, normx=normx,
        )
        finite = jnp.isfinite(beta) & jnp.isfinite(alpha) & jnp.isfinite(normx)
        # On a non-finite value keep the last finite iterate and stop with code 8.
        kept = jax.tree.map(lambda a, b_: jnp.where(finite, a, b_), new, s)
        return kept._replace(itn=itn, istop=jnp.where(finite, istop, 8).astype(jnp.int32))

    return step


def _stop_code(itn, maxiter, normr, normar, norma, conda, normx, normb, atol, btol, ctol) -> jax.Array:
    """SciPy's tests in SciPy's order: later (user-tolerance) tests override earlier ones."""
    test1 = normr / normb
    denom = norma * normr
    test2 = jnp.where(denom != 0, normar / jnp.where(denom != 0, denom, 1), jnp.inf)
    test3 = 1 / conda
    t1 = test1 / (1 + norma * normx / normb)
    rtol = btol + atol * norma * normx / normb
    code = jnp.full((), -1, jnp.int32)
    for condition, value in (
        (itn >= maxiter, 7),
        (1 + test3 <= 1, 6),
        (1 + test2 <= 1, 5),
        (1 + t1 <= 1, 4),
        (test3 <= ctol, 3),
        (test2 <= atol, 2),
        (test1 <= rtol, 1),
    ):
        code = jnp.where(condition, value, code)
    return code


def verify_stop(op: LinearMap, b: jax.Array, damp: jax.Array, x: Any, info: LstSqInfo, options: SolverOptions,
                norm_a: jax.Array, slack: float = 10.0) -> LstSqInfo:
    """Check a converged stop code against the true residual of min ||A x - b||^2 + damp^2 ||x||^2.

    Two products: r = b - A x and A^T r - damp^2 x, with rho = ||(r, damp x)||, computed to within
    e = eps (||A|| ||x|| + ||b||) (||A||: Frobenius). A code in (1, 2, 4, 5) stands if
      rho <= slack (btol ||b|| + atol ||A|| ||x||)                      (test 1 on the true residual), or
      rho <= 2 normr + slack e  and  ||A^T r - damp^2 x|| <= slack ||A|| (atol rho + e)
                                   (the recurrences' residual was right, and test 2 holds to rounding),
    tolerances at least 10 eps; else it becomes 9 (:data:`NOT_TRUSTED`). normr, normar and normx
    are replaced by the true values.
    """
    eps = float(jnp.finfo(b.dtype).eps)
    atol, btol = max(options.atol, 10 * eps), max(options.btol, 10 * eps)
    r = b - op.mv(x)
    normx, normb = tree_norm(x), jnp.linalg.norm(b)
    normr = jnp.sqrt(jnp.linalg.norm(r) ** 2 + (damp * normx) ** 2)
    normar = tree_norm(jax.tree.map(lambda ri, xi: ri - damp**2 * xi, op.rmv(r), x))
    rounding = eps * (norm_a * normx + normb)
    residual_small = normr <= slack * (btol * normb + atol * norm_a * normx)
    estimate_right = normr <= 2 * info.normr + slack * rounding
    gradient_small = normar <= slack * norm_a * (atol * normr + rounding)
    trusted = residual_small | (estimate_right & gradient_small)
    claimed = jnp.isin(info.istop, jnp.asarray((1, 2, 4, 5)))
    istop = jnp.where(claimed & ~trusted, NOT_TRUSTED, info.istop).astype(info.istop.dtype)
    return info._replace(istop=istop, normr=normr, normar=normar, normx=normx)
