"""Dense references for checking: LstSq and its derivatives by SVD, in NumPy float64.

These form matrices and are meant for small problems, tests and teaching. :func:`svd_solver` is a
JAX solver with the same signature as :func:`lsqlab.lsmr.lsmr`, so that the derivative rules of
:mod:`lsqlab.gradients` can be checked independently of LSMR.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab.operators import LinearMap
from lsqlab.solver import LstSqInfo


def pinv_damped(A: np.ndarray, damp: float = 0.0, rcond: float = 1e-12) -> np.ndarray:
    """(A^T A + damp^2 I)^{-1} A^T by SVD; for damp = 0 the pseudo-inverse, singular values
    below rcond * max(s) treated as zero."""
    U, s, Vt = np.linalg.svd(np.asarray(A, np.float64), full_matrices=False)
    if damp > 0:
        filt = s / (s**2 + damp**2)
    else:
        keep = s > rcond * (s[0] if s.size else 0.0)
        filt = np.where(keep, 1 / np.where(keep, s, 1), 0.0)
    return (Vt.T * filt) @ U.T


def lstsq_dense(A: np.ndarray, b: np.ndarray, damp: float = 0.0, rcond: float = 1e-12) -> np.ndarray:
    """LstSq(A, b, damp) = (A^T A + damp^2 I)^{-1} A^T b, or A^+ b for damp = 0."""
    return pinv_damped(A, damp, rcond) @ np.asarray(b, np.float64)


def lstsq_dense_vjp(
    A: np.ndarray, b: np.ndarray, damp: float, g: np.ndarray, rcond: float = 1e-12
) -> tuple[np.ndarray, np.ndarray, float]:
    """Cotangents (dmu/dA, dmu/db, dmu/ddamp) of x* = LstSq(A, b, damp) for dmu/dx* = g.

    damp > 0:  p = A N^{-1} g, s = N^{-1} g (N = A^T A + damp^2 I), dA = r s^T - p x^T,
               ddamp = -2 damp <s, x>.
    damp = 0, any rank (Golub & Pereyra): p = A^{+T} g, s = A^+ p, t = A^{+T} x, n = g - A^T p,
               dA = -p x^T + r s^T + t n^T.
    """
    A, b, g = (np.asarray(a, np.float64) for a in (A, b, g))
    x = lstsq_dense(A, b, damp, rcond)
    r = b - A @ x
    if damp > 0:
        s = np.linalg.solve(A.T @ A + damp**2 * np.eye(A.shape[1]), g)
        p = A @ s
        return np.outer(r, s) - np.outer(p, x), p, float(-2 * damp * s @ x)
    pinv = pinv_damped(A, 0.0, rcond)
    p = pinv.T @ g
    s = pinv @ p
    t = pinv.T @ x
    n = g - A.T @ p
    return -np.outer(p, x) + np.outer(r, s) + np.outer(t, n), p, 0.0


def materialise(op: LinearMap, dtype: Any) -> jax.Array:
    """The matrix of a linear map, one column per basis vector (n products)."""
    return jax.vmap(op.mv, out_axes=1)(jnp.eye(op.shape[1], dtype=dtype))


def svd_solver(op: LinearMap, b: jax.Array, damp: jax.Array | float = 0.0, x0: Any = None,
               options: Any = None) -> tuple[jax.Array, LstSqInfo]:
    """A dense JAX solver with LSMR's signature: x = V diag(s / (s^2 + damp^2)) U^T b (x0, options unused).

    Singular values below ``n * eps * max(s)`` count as zero when damp = 0.
    """
    del x0, options
    A = materialise(op, b.dtype)
    U, s, Vt = jnp.linalg.svd(A, full_matrices=False)
    cutoff = max(op.shape) * jnp.finfo(b.dtype).eps * s[0]
    damp2 = jnp.asarray(damp, b.dtype) ** 2
    keep = (s > cutoff) | (damp2 > 0)
    filt = jnp.where(keep, s / jnp.where(keep, s**2 + damp2, 1), 0)
    x = Vt.T @ (filt * (U.T @ b))
    r = b - A @ x
    conda = s[0] / jnp.min(jnp.where(keep, s, jnp.inf))
    info = LstSqInfo(
        iterations=jnp.zeros((), jnp.int32), istop=jnp.full((), 2, jnp.int32), normr=jnp.linalg.norm(r),
        normar=jnp.linalg.norm(A.T @ r - damp2 * x), norma=jnp.linalg.norm(A), conda=conda,
        normx=jnp.linalg.norm(x),
    )
    return x, info
