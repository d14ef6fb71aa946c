"""The null-space step's solve in Gram form: multipliers y with (J J^T) y = r, and z = J^T y.

For a wide J of full row rank, the minimum-norm solution of J z = r is z = J^T y with
(J J^T) y = r. Solving for y by preconditioned conjugate gradients (CG) has two properties that a
solve for z lacks:

- **Warm starts are exact.** CG from any y0 converges to the same y, and z = J^T y always lies in
  the row space of J. (A warm start of LSMR on J z = r with z0 != 0 returns z0 + J^+(r - J z0):
  the part of z0 outside the row space is never removed, and every step would subtract a stale
  vector.) Consecutive training steps have close J and r, so the previous y is a good start.
- **A preconditioner for J J^T is an m x m object.** :func:`nystrom` builds one from ``rank``
  products with J J^T (one batched JVP and VJP); it can be kept for many steps.

Each CG iteration costs one VJP (J^T p) and one JVP (J q) of the constraint; the start costs one
more pair (the residual of y0). The stop test is relative: ||r - J J^T y|| <= rtol ||r||, and
||r - J z|| is the first-order violation the step leaves (in CG's recurrence, which equals the true
residual in exact arithmetic; see tests/test_multipliers.py for how close it stays).
Rank-deficient J (redundant constraints) with r outside the range of J has no Gram solution: CG then
stops at ``maxiter`` with a residual that does not shrink; use LSMR or :class:`GramDense` there.

For few constraints (m up to a few hundred), :class:`GramDense` forms J itself (m VJPs in one
batched pass, or point by point for a :class:`lsqlab.constraints.Pointwise` constraint) and J J^T's
eigendecomposition once per step; both solves of the step reuse them, and
the pseudo-inverse of J J^T makes the answer the minimum-norm least-squares one at any rank.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Jvp = Callable[[Any], jax.Array]  # v (pytree like the parameters) -> J v (m-vector)
Vjp = Callable[[jax.Array], Any]  # w (m-vector) -> J^T w (pytree like the parameters)


class GramCG(NamedTuple):
    """Options of the Gram-form solve.

    rtol: stop when ||r - J J^T y|| <= rtol ||r|| (relative to the step's own right-hand side).
    maxiter: CG iterations per solve at most (after the start, which costs one product pair).
    warm_start: start each solve from the previous step's multipliers (else from 0).
    rank: size of the Nystrom preconditioner of J J^T (0: none).
    refresh_every: rebuild the preconditioner every this many steps.
    """

    rtol: float = 1e-3
    maxiter: int = 10
    warm_start: bool = True
    rank: int = 0
    refresh_every: int = 100

    def check(self) -> None:
        if not (self.rtol >= 0):
            raise ValueError(f"rtol must be >= 0, got {self.rtol}")
        if self.maxiter < 0 or self.rank < 0 or self.refresh_every < 1:
            raise ValueError(
                f"maxiter and rank must be >= 0 and refresh_every >= 1, got {self.maxiter}, {self.rank}, "
                f"{self.refresh_every}")


class Nystrom(NamedTuple):
    """Preconditioner M = U diag(s) U^T + (I - U U^T) ~ (J J^T)^{-1} on the captured subspace.

    U: m x rank orthonormal; s = lambda_min / lambda (the captured eigenvalues' ratios, <= 1).
    With rank 0 it is the identity.
    """

    basis: jax.Array
    scales: jax.Array

    def apply(self, r: jax.Array) -> jax.Array:
        coefficients = r @ self.basis  # U^T r, written so: XLA:CPU's transposed matrix-vector product is slower
        return r + self.basis @ ((self.scales - 1) * coefficients)


class Solution(NamedTuple):
    """y, z = J^T y, ||r - J z|| (CG's residual) and the CG iterations taken."""

    y: jax.Array
    z: Any
    residual_norm: jax.Array
    iterations: jax.Array


def squared_norm(tree: Any) -> jax.Array:
    """||v||^2 of a pytree of arrays."""
    return sum(jnp.vdot(leaf, leaf) for leaf in jax.tree.leaves(tree))


def rows_times(rows: Any, v: Any) -> jax.Array:
    """J v from J's rows (a pytree like v with a leading axis of m)."""
    return sum(jnp.tensordot(r, leaf, axes=leaf.ndim) for r, leaf in zip(jax.tree.leaves(rows), jax.tree.leaves(v)))


def rows_transposed_times(rows: Any, w: jax.Array) -> Any:
    """J^T w from J's rows, a pytree like one row."""
    return jax.tree.map(lambda r: jnp.tensordot(w, r, axes=1), rows)


def identity(m: int, dtype: Any) -> Nystrom:
    return Nystrom(jnp.zeros((m, 0), dtype), jnp.zeros((0,), dtype))


def nystrom(jvp: Jvp, vjp: Vjp, m: int, rank: int, key: jax.Array, dtype: Any) -> Nystrom:
    """Randomized Nystrom approximation of G = J J^T from Y = G Omega (Omega Gaussian, m x rank):
    G ~ Y (Omega^T Y)^{-1} Y^T = U diag(lambda) U^T, computed stably with a small shift nu
    (Y_nu = Y + nu Omega, C = chol(Omega^T Y_nu), B = Y_nu C^{-T}, B = U Sigma V^T,
    lambda = Sigma^2 - nu). Then M = U diag(lambda_min / lambda) U^T + (I - U U^T).

    The thin SVD of B comes from the eigendecomposition of the rank x rank B^T B (cheap on a CPU,
    where a QR of a tall m x rank matrix is slow in XLA). A rank above m is taken as m."""
    rank = min(rank, m)
    if rank == 0:
        return identity(m, dtype)
    omega = jax.random.normal(key, (m, rank), dtype)
    gram_omega = jax.vmap(lambda w: jvp(vjp(w)), in_axes=1, out_axes=1)(omega)  # G Omega, one batched pass
    nu = jnp.finfo(dtype).eps * jnp.linalg.norm(gram_omega)
    shifted = gram_omega + nu * omega
    core = omega.T @ shifted
    factor = jnp.linalg.cholesky(0.5 * (core + core.T))
    b = jax.scipy.linalg.solve_triangular(factor, shifted.T, lower=True).T
    eigenvalues, vectors = jnp.linalg.eigh(b.T @ b)  # ascending: Sigma^2
    sigma = jnp.sqrt(jnp.maximum(eigenvalues, 0))
    basis = b @ (vectors / jnp.where(sigma > 0, sigma, 1))
    lam = jnp.maximum(eigenvalues - nu, 0)
    smallest = lam[0]
    usable = jnp.all(jnp.isfinite(basis)) & (smallest > 0)
    scales = jnp.where(usable, smallest / jnp.where(lam > 0, lam, 1), 1)
    return Nystrom(jnp.where(usable, basis, 0), scales)


def solve(jvp: Jvp, vjp: Vjp, rhs: jax.Array, y0: jax.Array, preconditioner: Nystrom,
          options: GramCG) -> Solution:
    """Preconditioned CG on (J J^T) y = rhs from y0, carrying z = J^T y along (no extra product).

    alpha = <r, M r> / ||J^T p||^2 (the curvature as a squared norm, never negative in rounding)."""
    z = vjp(y0)
    residual = rhs - jvp(z)
    target = options.rtol * jnp.linalg.norm(rhs)
    preconditioned = preconditioner.apply(residual)
    rho = residual @ preconditioned

    def not_done(carry):
        _, _, r, _, _, k = carry
        return (k < options.maxiter) & (jnp.linalg.norm(r) > target)

    def iterate(carry):
        y, z, r, p, rho, k = carry
        q = vjp(p)
        curvature = squared_norm(q)
        alpha = jnp.where(curvature > 0, rho / jnp.where(curvature > 0, curvature, 1), 0)
        y = y + alpha * p
        z = jax.tree.map(lambda zi, qi: zi + alpha * qi, z, q)
        r = r - alpha * jvp(q)
        s = preconditioner.apply(r)
        rho_next = r @ s
        beta = jnp.where(rho > 0, rho_next / jnp.where(rho > 0, rho, 1), 0)
        return y, z, r, s + beta * p, rho_next, k + 1

    start = (y0, z, residual, preconditioned, rho, jnp.zeros([], jnp.int32))
    y, z, r, _, _, k = jax.lax.while_loop(not_done, iterate, start)
    return Solution(y, z, jnp.linalg.norm(r), k)


class GramDense(NamedTuple):
    """Options of the dense Gram form: J formed by m VJPs, (J J^T)^+ by an eigendecomposition.

    rcond: eigenvalues of J J^T below rcond * the largest are treated as 0 (rank deficiency;
    rcond ~ eps(dtype) * m when None, i.e. cond(J) up to about 1 / sqrt(rcond)).
    """

    rcond: float | None = None

    def check(self) -> None:
        if self.rcond is not None and not (0 <= self.rcond < 1):
            raise ValueError(f"rcond must be in [0, 1), got {self.rcond}")


class DenseFactor(NamedTuple):
    """J's rows (a pytree with a leading axis of m) and the eigendecomposition of J J^T, its small
    eigenvalues' inverses set to 0."""

    rows: Any
    gram: jax.Array
    vectors: jax.Array
    inverse_values: jax.Array


def rows_by_vjp(vjp: Vjp, m: int, dtype: Any) -> Any:
    """J's rows by ``vmap`` of the VJP over the m unit vectors (a pytree with a leading axis of m)."""
    return jax.vmap(vjp)(jnp.eye(m, dtype=dtype))


def dense_factor(rows: Any, m: int, dtype: Any, options: GramDense) -> DenseFactor:
    """G = J J^T = sum over leaves of J_leaf J_leaf^T from J's rows, G = V diag(w) V^T, 1/w kept above
    rcond * max w. Leaf by leaf: the rows are never concatenated, so a sharded leaf's rows stay on
    their devices and only G's m x m partial sums are exchanged."""
    flats = [jnp.reshape(leaf, (m, -1)) for leaf in jax.tree.leaves(rows)]
    gram = sum(flat @ flat.T for flat in flats)
    values, vectors = jnp.linalg.eigh(gram)
    rcond = jnp.finfo(dtype).eps * m if options.rcond is None else options.rcond
    keep = values > rcond * jnp.max(values)
    return DenseFactor(rows, gram, vectors, jnp.where(keep, 1 / jnp.where(keep, values, 1), 0))


def dense_solve(factor: DenseFactor, rhs: jax.Array) -> Solution:
    """y = (J J^T)^+ rhs, z = J^T y from the stored rows (no product with the constraint)."""
    y = factor.vectors @ (factor.inverse_values * (rhs @ factor.vectors))
    z = rows_transposed_times(factor.rows, y)
    return Solution(y, z, jnp.linalg.norm(rhs - factor.gram @ y), jnp.zeros([], jnp.int32))
