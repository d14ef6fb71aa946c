"""Right preconditioners for LSMR: solve with A P (P: R^k -> R^n) and return x = P y.

Damped problems are preconditioned as the stacked system [A; damp I], so the answer does not
depend on P:

    x* = P y*,   y* = LstSq(B, [b; 0]),   B = [A P; damp P]                       (A itself)
    p* = w*[:m], w* = LstSq(B^T, P^T g)   (min-norm; = LstSq(A^T, g, damp))      (A^T, in the rules)

The second line holds because P^T [A^T, damp I] w = P^T g has the same solutions as
[A^T, damp I] w = g when P is invertible, and its minimum-norm solution has first block
(A A^T + damp^2 I)^{-1} A g. With a rank-revealing P (n x k, k < n, damp = 0) whose range is the
row space of A, x* = P y* is still the minimum-norm solution. Every solve of the derivative rules
goes through the same wrapper, so preconditioned gradients need nothing else.
"""

from __future__ import annotations

import math
import numbers
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

from lsqlab.lsmr import verify_stop
from lsqlab.operators import (
    LinearMap, as_operator, check_damp, check_finite, frobenius_norm, golub_kahan_products, is_concrete, linear_map,
    matmul,
)
from lsqlab.solver import LstSqInfo


class ColumnScaling(NamedTuple):
    """P = diag(scale): Jacobi preconditioning of the columns."""

    scale: jax.Array

    @property
    def size(self) -> int:
        return self.scale.shape[0]

    def apply(self, y: jax.Array) -> jax.Array:
        return self.scale * y

    def apply_t(self, x: jax.Array) -> jax.Array:
        return self.scale * x


class MatrixPreconditioner(NamedTuple):
    """P given as an n x k matrix (k = n: invertible; k < n: a basis of the row space, scaled)."""

    matrix: jax.Array

    @property
    def size(self) -> int:
        return self.matrix.shape[1]

    def apply(self, y: jax.Array) -> jax.Array:
        return self.matrix @ y

    def apply_t(self, x: jax.Array) -> jax.Array:
        return self.matrix.T @ x


Preconditioner = ColumnScaling | MatrixPreconditioner


class Preconditioned:
    """A solver ``(op, b, damp, x0, options)`` that runs ``solver`` on the right-preconditioned
    stacked problem of ``op.preconditioner`` (see the module docstring).

    Products A (P y) of a dense A carry rounding errors of about eps ||A|| ||P|| ||y||, different
    at every application, which is eps cond(A) relative to ||A P y||: LSMR then stalls at that level
    (and its recurrences can report convergence below it). Where that floor is above a tenth of the
    requested tolerance (the smaller nonzero one of atol and btol), A P is formed once per solve
    (2 m n k flops) and LSMR runs on a fixed, consistent matrix, as accurate as LSMR on a user-formed
    A P. The user's solve ends with the stop test checked on the true residual of the original problem
    (:func:`lsqlab.lsmr.verify_stop`).
    A wide undamped problem is solved without P (a right preconditioner would change its
    minimum-norm answer), decided by damp's value at run time.
    """

    def __init__(self, solver: Any):
        self.solver = solver

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Preconditioned) and other.solver == self.solver

    def __hash__(self) -> int:
        return hash((Preconditioned, self.solver))

    def __call__(self, op: LinearMap, b: jax.Array, damp: Any, x0: Any, options: Any) -> tuple[jax.Array, LstSqInfo]:
        P = op.preconditioner
        if P is None:  # a map without one (e.g. [A^T; damp I] inside the derivative rules)
            return self.solver(op, b, damp, x0, options)
        a = op.T if op.transposed else op  # A itself
        m, n = a.shape
        damp = jnp.asarray(damp, b.dtype)

        def solve(formed: bool) -> tuple[jax.Array, LstSqInfo]:
            stacked = _stacked(a, P, damp, formed)
            if op.transposed:
                w, info = self.solver(stacked.T, P.apply_t(b), 0.0, None, options)
                return w[:m], info
            y, info = self.solver(stacked, jnp.concatenate([b, jnp.zeros(n, b.dtype)]), 0.0, None, options)
            return P.apply(y), info

        def preconditioned() -> tuple[jax.Array, LstSqInfo]:
            if a.matrix is not None and isinstance(P, MatrixPreconditioner):
                floor = product_rounding(a.matrix, P.matrix)
                tolerance = min([t for t in (options.atol, options.btol) if t > 0], default=0.0)
                x, info = lax.cond(floor > 0.1 * tolerance, lambda: solve(True), lambda: solve(False))
            else:
                x, info = solve(False)
            if op.transposed:  # a solve inside the derivative rules: its info is not reported
                return x, info
            return x, verify_stop(a, b, damp, x, info, options, frobenius_norm(a, b.dtype))

        if op.transposed or m >= n:
            return preconditioned()
        unpreconditioned = op._replace(preconditioner=None)
        return lax.cond(damp != 0, preconditioned, lambda: self.solver(unpreconditioned, b, damp, x0, options))


def product_rounding(A: jax.Array, P: jax.Array) -> jax.Array:
    """eps ||A||_F ||P||_F / k: the relative rounding error of a product A (P y), about eps cond(A)
    when A P is well conditioned (||A||_F ||P||_F / k is then a lower estimate of cond(A)); k counts
    P's nonzero columns (a rank-revealing P built under ``jit`` has zero columns beyond the rank)."""
    k = jnp.maximum(jnp.sum(jnp.any(P != 0, axis=0)), 1)
    return jnp.finfo(A.dtype).eps * jnp.linalg.norm(A) * jnp.linalg.norm(P) / k


def _stacked(a: LinearMap, P: Preconditioner, damp: jax.Array, formed: bool) -> LinearMap:
    """B = [A P; damp P] on R^k, its transpose, and both Golub–Kahan products in one pass over A.
    ``formed``: the block A P is one matrix formed here; otherwise A is applied to z = P y."""
    m, n = a.shape
    top = linear_map(matmul, a.matrix @ P.matrix, (m, P.size), a.matrix.dtype) if formed else None

    def b_mv(y: jax.Array) -> jax.Array:
        z = P.apply(y)
        return jnp.concatenate([top.mv(y) if formed else a.mv(z), damp * z])

    def b_rmv(u: jax.Array) -> jax.Array:  # B^T u = (A P)^T u_1 + damp P^T u_2
        if formed:
            return top.rmv(u[:m]) + damp * P.apply_t(u[m:])
        return P.apply_t(a.rmv(u[:m]) + damp * u[m:])

    def b_mv_rmv(y: jax.Array, alpha: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        z = P.apply(y)  # t = B y - alpha u, then B^T t
        t_2 = damp * z - alpha * u[m:]
        if formed:
            t_1, top_t = golub_kahan_products(top, y, alpha, u[:m])
            return jnp.concatenate([t_1, t_2]), top_t + damp * P.apply_t(t_2)
        t_1, at_t_1 = golub_kahan_products(a, z, alpha, u[:m])
        return jnp.concatenate([t_1, t_2]), P.apply_t(at_t_1 + damp * t_2)

    return LinearMap(b_mv, b_rmv, (m + n, P.size), mv_rmv=b_mv_rmv)


def _flat_map(A: Any, domain: Any) -> tuple[LinearMap, Any]:
    """A matrix or a linear function (with ``domain``) as a LinearMap on flat vectors."""
    if callable(A):
        out = jax.eval_shape(A, domain)
        b = jax.tree.map(lambda o: jnp.zeros(o.shape, o.dtype), out)
    else:
        b = jnp.zeros(jnp.shape(A)[0], jnp.asarray(A).dtype)
    problem = as_operator(A, b, None, domain)
    return linear_map(problem.apply, problem.params, problem.shape, problem.b.dtype), problem.b.dtype


@partial(jax.jit, static_argnums=(2, 3))
def _sparse_sign_sketch(A: jax.Array, key: jax.Array, s: int, nonzeros: int) -> jax.Array:
    """S A for S (s x m) with ``nonzeros`` random entries +-1/sqrt(nonzeros) in each column:
    row j of A is added, with a random sign, to ``nonzeros`` random rows of the sketch."""
    m = A.shape[0]
    rows_key, signs_key = jax.random.split(key)
    rows = jax.random.randint(rows_key, (nonzeros, m), 0, s)
    signs = jax.random.rademacher(signs_key, (nonzeros, m), A.dtype) / jnp.sqrt(jnp.asarray(nonzeros, A.dtype))

    def add_copy(sketch: jax.Array, copy: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        rows_c, signs_c = copy
        return sketch + jax.ops.segment_sum(signs_c[:, None] * A, rows_c, num_segments=s), None

    sketch, _ = jax.lax.scan(add_copy, jnp.zeros((s, A.shape[1]), A.dtype), (rows, signs))
    return sketch


def column_scaling(A: Any, *, damp: float = 0.0, domain: Any = None) -> ColumnScaling:
    """Jacobi: P = diag(1 / sqrt(||a_j||^2 + damp^2)) (1 for zero columns). A function operator
    costs n products to find its column norms. Runs under ``jit``; for a row-sharded A each device
    sums its rows' squares and one all-reduce of n entries gives the scale, replicated."""
    check_damp(damp)
    op, dtype = _flat_map(A, domain)
    columns = A if not callable(A) else jax.vmap(op.mv, out_axes=1)(jnp.eye(op.shape[1], dtype=dtype))
    norms2 = jnp.sum(jnp.asarray(columns) ** 2, axis=0) + damp**2
    return ColumnScaling(jnp.where(norms2 > 0, 1 / jnp.sqrt(jnp.where(norms2 > 0, norms2, 1)), 1))


def sketch_preconditioner(
    A: Any,
    key: jax.Array,
    *,
    oversampling: float = 4.0,
    damp: float = 0.0,
    rank_revealing: bool = True,
    rcond: float | None = None,
    domain: Any = None,
    sparse_nonzeros: int = 8,
    factor_dtype: Any = None,
    factorisation: Literal["qr", "cholesky"] = "qr",
) -> MatrixPreconditioner:
    """Sketch-and-precondition (Blendenpik/LSRN style) for tall problems.

    The sketch S A has s = round(oversampling * n) > n rows. For a function operator S is Gaussian
    and S A is formed matrix-free as (A^T S^T)^T by s batched products with A^T. For a matrix S is a
    sparse sign embedding (``sparse_nonzeros`` <= s entries +-1/sqrt(nnz) per column), so S A costs
    nnz * m * n instead of s * m * n. For damp > 0 the rows damp I are appended (the stacked operator).
    QR of the sketch gives R with A R^{-1} well conditioned (cond ~ (1 + sqrt(n/s)) / (1 - sqrt(n/s))).
    ``rank_revealing`` (default): a complete orthogonal decomposition of R (LAPACK gelsy's): pivoted
    QR R Pi = Q R_p, rank k = #{|(R_p)_jj| > ``rcond`` |(R_p)_11|} (default rcond n * eps), then
    [R11 R12] = T Z and P = Pi Z^T T^{-1}, whose range is the numerical row space of A, so
    rank-deficient undamped problems keep their minimum-norm answer (QR steps only: cheaper than an SVD of R).
    Otherwise P = R^{-1} (full column rank only). Either P is formed once, so that each application
    is a matrix-vector product rather than a triangular solve.
    ``factor_dtype=jnp.float32`` sketches and factorises a float64 matrix in float32 (half the bytes
    and faster arithmetic, timed in benchmarks/bench_preconditioners.py; R^{-1} and the rank-revealing
    step stay in A's precision): P only has to be approximate,
    since the solve on [A P; damp P] stays in A's precision, and a float32 R still gives
    cond(A P) = O(1) while cond(A) * eps32 << 1 (cond(A) up to about 1e6).
    ``factorisation="cholesky"`` takes R from the Cholesky factor of the sketch's Gram matrix formed
    in A's precision: s n^2 flops of matrix products instead of LAPACK's 2 s n^2 for QR, valid while
    cond(A)^2 eps << 1. Where that fails (a non-finite R, or a diagonal of R spread beyond
    0.1 / sqrt(eps)) it falls back to QR.

    Runs under ``jit`` (the rank k is data: there P has n columns, the last n - k of them zero; called
    eagerly, P keeps its first k columns) and on sharded inputs: a row-sharded A is sketched where
    its rows live (each device adds its rows into the s x n sketch, then one all-reduce of it), and
    everything after works on the small s x n sketch, so P is replicated on A's devices.
    """
    if factorisation not in ("qr", "cholesky"):
        raise ValueError(f"factorisation must be 'qr' or 'cholesky', got {factorisation!r}")
    check_damp(damp)
    if rcond is not None and not 0 <= rcond < 1:
        raise ValueError(f"rcond must be None or in [0, 1) (relative to the largest |R_jj|), got {rcond}")
    op, dtype = _flat_map(A, domain)
    m, n = op.shape
    s = _sketch_rows(oversampling, n)
    work_dtype = factor_dtype or dtype
    if callable(A):
        sketch_t = jax.random.normal(key, (s, m), dtype) / jnp.sqrt(jnp.asarray(s, dtype))
        sketch = jax.vmap(op.rmv)(sketch_t).astype(work_dtype)  # rows: (S A)_i = (A^T S^T e_i)^T
    else:
        _check_sparse_nonzeros(sparse_nonzeros, s)
        sketch = _sparse_sign_sketch(jnp.asarray(A).astype(work_dtype), key, s, sparse_nonzeros)
    if not is_concrete(damp) or damp > 0:  # a traced damp: the rows damp I always (zero rows at damp 0)
        sketch = jnp.concatenate([sketch, damp * jnp.eye(n, dtype=work_dtype)])
    if factorisation == "cholesky":
        r = _gram_cholesky_or_qr(sketch, dtype)
    else:
        r = jnp.linalg.qr(sketch, mode="r").astype(dtype)
    if not rank_revealing:
        return MatrixPreconditioner(_triangular_inverse(r))
    r_pivoted, permutation = _pivoted_qr(r)
    diagonal = jnp.abs(jnp.diag(r_pivoted))
    cutoff = (n * jnp.finfo(dtype).eps if rcond is None else rcond) * diagonal[0]
    k = jnp.sum(diagonal > cutoff)
    P = _row_space_inverse(r_pivoted, permutation, k)
    if not is_concrete(k):  # under jit: n columns, the last n - k of them zero
        return MatrixPreconditioner(P)
    if int(k) == 0:
        raise ValueError("the sketch of A has numerical rank 0 (A is zero): there is nothing to precondition")
    return MatrixPreconditioner(P[:, :int(k)])


def check_preconditioner_finite(preconditioner: Preconditioner) -> None:
    """Raise ValueError if the preconditioner's arrays are concrete and contain NaN or Inf."""
    check_finite("the preconditioner", preconditioner)


def _sketch_rows(oversampling: float, n: int) -> int:
    """s = round(oversampling * n) sketch rows, which must exceed n (cond(A R^{-1}) is unbounded at s <= n)."""
    if not math.isfinite(oversampling):
        raise ValueError(f"oversampling must be finite, got {oversampling}")
    s = int(round(oversampling * n))
    if s <= n:
        raise ValueError(
            f"oversampling = {oversampling} gives a sketch of s = {s} rows for A's n = {n} columns: "
            "the sketch needs more rows than columns (oversampling > 1, typically 2 to 4)"
        )
    return s


def _check_sparse_nonzeros(nonzeros: int, s: int) -> None:
    """The sparse sign embedding's nonzeros per column: an integer in [1, s]."""
    if isinstance(nonzeros, bool) or not isinstance(nonzeros, numbers.Integral):
        raise TypeError(f"sparse_nonzeros must be an integer, got {type(nonzeros).__name__} {nonzeros!r}")
    if not 1 <= nonzeros <= s:
        raise ValueError(f"sparse_nonzeros must lie in [1, s = {s}] (the sketch's rows), got {nonzeros}")


@jax.jit
def _pivoted_qr(r: jax.Array) -> tuple[jax.Array, jax.Array]:
    """R Pi = Q R_p with column pivoting (|diag R_p| non-increasing); Q is not formed."""
    _, r_pivoted, permutation = jax.lax.linalg.qr(r, pivoting=True, full_matrices=False)
    return r_pivoted, permutation


@jax.jit
def _row_space_inverse(r_pivoted: jax.Array, permutation: jax.Array, k: jax.Array) -> jax.Array:
    """P = Pi Z^T T^{-1} from the complete orthogonal decomposition [R11 R12] = T Z of the first k
    rows of R_p: R P = [Q_k, 0] and range(P) = the numerical row space of R. P is n x n with its last
    n - k columns zero (k is data, so this compiles once for every rank): Householder QR of the
    masked R_p^T, whose last n - k columns are zero, gives Z^T and T^T in its first k columns and
    zeros after them, so T^T is completed with the identity there before the inversion.
    For k = n, P = Pi R_p^{-1}."""
    n = r_pivoted.shape[0]
    kept = jnp.arange(n) < k

    def full_rank() -> jax.Array:
        return _triangular_inverse(r_pivoted)

    def deficient() -> jax.Array:
        z_t, t_t = jnp.linalg.qr(jnp.where(kept[:, None], r_pivoted, 0).T)  # [R11 R12; 0 0]^T = Z^T T^T
        t_t = t_t + jnp.diag(jnp.where(kept, 0, 1).astype(t_t.dtype))
        return jnp.where(kept[None, :], z_t @ _triangular_inverse(t_t).T, 0)

    local = jax.lax.cond(k == n, full_rank, deficient)
    return jnp.zeros_like(local).at[permutation].set(local)


def _gram_cholesky_or_qr(sketch: jax.Array, dtype: Any) -> jax.Array:
    """Upper-triangular R (in ``dtype``) with R^T R = X^T X (X = sketch): the Cholesky factor of the
    Gram matrix formed in ``dtype``, or R of QR of X in its own dtype where that fails (non-finite) or
    R's diagonal shows cond(X) beyond 0.1 / sqrt(eps). The choice is taken at run time
    (``lax.cond``), so this also runs under ``jit``."""
    r = _cholesky_of_gram(sketch.astype(dtype))
    diagonal = jnp.abs(jnp.diag(r))
    spread_limit = 0.1 / np.sqrt(np.finfo(dtype).eps)
    valid = jnp.all(jnp.isfinite(r)) & (jnp.max(diagonal) <= spread_limit * jnp.min(diagonal))
    return lax.cond(valid, lambda: r, lambda: jnp.linalg.qr(sketch, mode="r").astype(dtype))


@jax.jit
def _cholesky_of_gram(x: jax.Array) -> jax.Array:
    """Cholesky of G = X^T X from its lower block triangle only (4 blocks of columns: 5/8 of the
    full product's flops); returns the upper factor R = L^T."""
    n = x.shape[1]
    edges = np.linspace(0, n, 5).astype(int)
    gram = jnp.zeros((n, n), x.dtype)
    for start, stop in zip(edges[:-1], edges[1:]):
        gram = gram.at[start:, start:stop].set(x[:, start:].T @ x[:, start:stop])
    return jax.lax.linalg.cholesky(gram, symmetrize_input=False).T


@jax.jit
def _triangular_inverse(r: jax.Array) -> jax.Array:
    """R^{-1} for an upper-triangular R, by blocks: [R11 R12; 0 R22]^{-1} =
    [R11^{-1}, -R11^{-1} R12 R22^{-1}; 0, R22^{-1}] (n^3/3 flops, mostly matrix products)."""
    n = r.shape[0]
    if n <= 256:
        return solve_triangular(r, jnp.eye(n, dtype=r.dtype), lower=False)
    h = n // 2
    inv_11, inv_22 = _triangular_inverse(r[:h, :h]), _triangular_inverse(r[h:, h:])
    top = jnp.concatenate([inv_11, -(inv_11 @ r[:h, h:]) @ inv_22], axis=1)
    bottom = jnp.concatenate([jnp.zeros((n - h, h), r.dtype), inv_22], axis=1)
    return jnp.concatenate([top, bottom])
