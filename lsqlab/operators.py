"""Linear operators given as matrices or as functions ``v -> A v``, flattened to vectors.

A function operator may take and return pytrees and may close over arrays (its parameters).
:func:`as_operator` traces it to a jaxpr whose closed-over arrays become explicit, differentiable
inputs, and derives ``A^T u`` with ``jax.linear_transpose``: the user never writes
the transpose. Checks that can run before tracing (shapes, dtypes, linearity) raise ``ValueError``
or ``TypeError`` naming the problem.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun
from jax.flatten_util import ravel_pytree

Apply = Callable[[Any, jax.Array], jax.Array]  # (params, flat v) -> flat A v
MvRmv = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]  # (v, alpha, u) -> (t, A^T t)

# Dense matrices above this size are streamed once per Golub–Kahan step on the CPU (larger than the
# last-level cache of a typical CPU), in row blocks of about BLOCK_BYTES.
STREAM_BYTES = 32 * 2**20
BLOCK_BYTES = 8 * 2**20


class LinearMap(NamedTuple):
    """A: R^n -> R^m on flat vectors, as ``mv(v) = A v`` and ``rmv(u) = A^T u``.

    ``preconditioner`` (acting on the domain R^n of the untransposed map) travels with the map and
    its transpose; ``transposed`` tells a preconditioned solver which side it is on. ``mv_rmv``, when
    set, computes both products of a Golub–Kahan step of the *untransposed* map at once (see
    :func:`golub_kahan_products`). ``matrix`` is the dense matrix of the untransposed map when it
    was given as one (None for a function).
    """

    mv: Callable[[jax.Array], jax.Array]
    rmv: Callable[[jax.Array], jax.Array]
    shape: tuple[int, int]
    transposed: bool = False
    preconditioner: Any = None
    mv_rmv: MvRmv | None = None
    matrix: jax.Array | None = None

    @property
    def T(self) -> "LinearMap":
        return self._replace(mv=self.rmv, rmv=self.mv, shape=self.shape[::-1], transposed=not self.transposed)


def golub_kahan_products(op: LinearMap, v: jax.Array, alpha: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """t = A v - alpha u and A^T t: the two products of one bidiagonalisation step, in one pass
    over A when the map provides ``mv_rmv``."""
    if op.mv_rmv is not None and not op.transposed:
        return op.mv_rmv(v, alpha, u)
    return _two_products(op.mv, op.rmv, v, alpha, u)


def _two_products(mv: Callable, rmv: Callable, v: jax.Array, alpha: jax.Array,
                  u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """t = A v - alpha u, then A^T t: two passes over A."""
    t = mv(v) - alpha * u
    return t, rmv(t)


def matmul(matrix: jax.Array, v: jax.Array) -> jax.Array:
    """The apply function of a dense matrix operator: A v."""
    return matrix @ v


def streamed_mv_rmv(matrix: jax.Array, v: jax.Array, alpha: jax.Array, u: jax.Array,
                    block_rows: int) -> tuple[jax.Array, jax.Array]:
    """t = A v - alpha u and A^T t = sum_i A_i^T t_i over row blocks A_i, each block read from memory
    once for both products: half the memory traffic of A v then A^T t for a matrix beyond cache."""
    m = matrix.shape[0]
    block_rows = min(block_rows, m)
    blocks = m // block_rows

    def add_block(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        t, w = carry
        a_i = lax.dynamic_slice_in_dim(matrix, i * block_rows, block_rows)
        t_i = a_i @ v - alpha * lax.dynamic_slice_in_dim(u, i * block_rows, block_rows)
        return lax.dynamic_update_slice_in_dim(t, t_i, i * block_rows, 0), w + t_i @ a_i

    t, w = lax.fori_loop(0, blocks, add_block, (jnp.zeros_like(u), jnp.zeros_like(v)))
    tail = matrix[blocks * block_rows:]
    t_tail = tail @ v - alpha * u[blocks * block_rows:]
    return t.at[blocks * block_rows:].set(t_tail), w + t_tail @ tail


def is_partitioned(x: Any) -> bool:
    """True when ``x`` is laid out over several devices: a concrete array whose sharding spans more
    than one device, or a traced value whose abstract mesh (under ``jit``, its inputs' mesh) does."""
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return len(x.sharding.device_set) > 1
    mesh = getattr(getattr(jax.typeof(x), "sharding", None), "mesh", None)
    return mesh is not None and not mesh.empty and mesh.size > 1


def _matrix_mv_rmv(matrix: jax.Array) -> MvRmv | None:
    """Streamed products on the CPU for a matrix beyond STREAM_BYTES; on other backends (and for
    smaller matrices) the two plain products are already at memory speed. A matrix laid out over
    several devices keeps the plain products, which XLA partitions shard by shard (A v on each
    device's rows; A^T t as each device's share plus one all-reduce of n entries): streaming its
    row blocks with dynamic slices would make XLA gather the whole of A onto every device."""
    if matrix.size * matrix.dtype.itemsize < STREAM_BYTES or is_partitioned(matrix):
        return None
    block_rows = max(1, BLOCK_BYTES // (matrix.shape[1] * matrix.dtype.itemsize))

    def mv_rmv(v: jax.Array, alpha: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        return lax.platform_dependent(
            v, alpha, u, cpu=lambda *a: streamed_mv_rmv(matrix, *a, block_rows),
            default=partial(_two_products, lambda w: matrix @ w, lambda t: t @ matrix))

    return mv_rmv


def linear_map(apply: Apply, params: Any, shape: tuple[int, int], dtype: Any, preconditioner: Any = None) -> LinearMap:
    """Bind parameters: ``mv = apply(params, .)``, ``rmv`` its transpose by ``jax.linear_transpose``
    (for a dense matrix, ``mv_rmv`` streams it once per step where that pays)."""

    def mv(v: jax.Array) -> jax.Array:
        return apply(params, v)

    transpose = jax.linear_transpose(mv, jax.ShapeDtypeStruct((shape[1],), dtype))
    if apply is matmul:
        return LinearMap(mv, lambda u: transpose(u)[0], shape, False, preconditioner, _matrix_mv_rmv(params), params)
    return LinearMap(mv, lambda u: transpose(u)[0], shape, False, preconditioner)


def frobenius_norm(op: LinearMap, dtype: Any, probes: int = 8) -> jax.Array:
    """||A||_F: exact for a matrix; for a function the Hutchinson estimate sqrt(mean_i ||A z_i||^2)
    over ``probes`` fixed Rademacher vectors z_i (E ||A z||^2 = ||A||_F^2)."""
    if op.matrix is not None:
        return jnp.linalg.norm(op.matrix)
    a = op.T if op.transposed else op
    z = jax.random.rademacher(jax.random.key(0), (probes, a.shape[1]), dtype)
    return jnp.sqrt(jnp.mean(jnp.sum(jax.vmap(a.mv)(z) ** 2, axis=1)))


def _is_float_dtype(dtype: Any) -> bool:
    return jnp.issubdtype(dtype, jnp.floating)


def check_float(name: str, dtype: Any) -> None:
    """Raise TypeError unless ``dtype`` is float32 or float64 (complex, integer, 16-bit refused)."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{name} is complex ({dtype}); lsqlab solves real least-squares problems")
    if not _is_float_dtype(dtype):
        raise TypeError(f"{name} has dtype {dtype}; a floating dtype (float32 or float64) is needed")
    if jnp.finfo(dtype).bits < 32:
        raise TypeError(f"{name} has dtype {dtype}; lsqlab supports float32 and float64 only: "
                        f"cast it with {name}.astype(jnp.float32)")


def check_damp(damp: Any) -> None:
    """Reject a non-scalar damp, and a negative or non-finite one when its value is known."""
    if jnp.ndim(damp) != 0:
        raise ValueError(f"damp must be a scalar, got shape {jnp.shape(damp)}")
    if is_concrete(damp):
        value = float(damp)
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"damp must be finite and >= 0, got {value}")


def is_concrete(*trees: Any) -> bool:
    """True when no leaf is a tracer, so values can be inspected in Python."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def check_finite(name: str, tree: Any) -> None:
    """Raise for NaN/Inf in concrete arrays (traced ones are checked in the solve: istop 8). The test
    runs where each array lives (a sharded one on its shards, also across processes) and only its
    scalar answer is read back."""
    for leaf in jax.tree.leaves(tree):
        if is_concrete(leaf) and not bool(read_back(_all_finite, leaf)):
            raise ValueError(f"{name} contains NaN or Inf")


def read_back(reduction: Callable[[jax.Array], jax.Array], x: Any) -> jax.Array:
    """``reduction(x)`` for a concrete x, evaluated now even inside a trace (where it would be staged),
    on x's devices: only the scalar answer, replicated, comes back to the host."""
    with jax.ensure_compile_time_eval():
        return reduction(x)


@jax.jit
def _all_finite(x: jax.Array) -> jax.Array:
    """all(isfinite(x)) as a scalar (replicated over x's devices, so any process can read it)."""
    return jnp.all(jnp.isfinite(x))


class FlatProblem(NamedTuple):
    """A least-squares problem flattened to vectors; ``apply(params, v)`` is linear in ``v``."""

    apply: Apply
    params: Any
    b: jax.Array
    x0: jax.Array | None
    shape: tuple[int, int]
    unravel_x: Callable[[jax.Array], Any]


def as_operator(A: Any, b: Any, x0: Any = None, domain: Any = None) -> FlatProblem:
    """Validate ``A``, ``b`` (and ``x0``/``domain``) and flatten them.

    ``A``: a 2-D array, or a function linear in its argument. For a function the domain is taken
    from ``x0`` or ``domain`` (a pytree of arrays or ``jax.ShapeDtypeStruct``).
    """
    b_flat, _ = ravel_pytree(b)
    for leaf in jax.tree.leaves(b):
        check_float("b", jnp.result_type(leaf))
    check_finite("b", b)
    dtype = b_flat.dtype
    like = x0 if x0 is not None else domain
    if callable(A):
        if like is None:
            raise ValueError("A is a function: pass x0 (e.g. jnp.zeros(n)) or domain= to fix its input space")
        return _function_problem(A, b, b_flat, x0, like, dtype)
    return _matrix_problem(A, b, b_flat, x0, dtype)


def _matrix_problem(A: Any, b: Any, b_flat: jax.Array, x0: Any, dtype: Any) -> FlatProblem:
    A = jnp.asarray(A)
    check_float("A", A.dtype)
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D array or a function, got an array of shape {A.shape}")
    if not (isinstance(b, (jax.Array, np.ndarray)) and jnp.ndim(b) == 1):
        raise ValueError(f"with a matrix A, b must be a 1-D array, got {jax.tree.structure(b)} {jnp.shape(b)}")
    m, n = A.shape
    if b_flat.shape[0] != m:
        raise ValueError(f"A has shape {A.shape} but b has {b_flat.shape[0]} entries (expected {m})")
    if A.dtype != dtype:
        raise TypeError(f"A has dtype {A.dtype} but b has dtype {dtype}; cast one of them")
    check_finite("A", A)
    x0_flat = None
    if x0 is not None:
        x0_flat = _check_x0(x0, n, dtype)
    return FlatProblem(matmul, A, b_flat, x0_flat, (m, n), lambda x: x)


def _check_x0(x0: Any, n: int, dtype: Any) -> jax.Array:
    x0_flat, _ = ravel_pytree(x0)
    if x0_flat.shape[0] != n:
        raise ValueError(f"x0 has {x0_flat.shape[0]} entries but A has {n} columns")
    if x0_flat.dtype != dtype:
        raise TypeError(f"x0 has dtype {x0_flat.dtype} but b has dtype {dtype}")
    check_finite("x0", x0)
    return x0_flat


def _function_problem(A: Callable, b: Any, b_flat: jax.Array, x0: Any, like: Any, dtype: Any) -> FlatProblem:
    example = jax.tree.map(lambda leaf: jnp.zeros(jnp.shape(leaf), leaf.dtype), like)
    x_flat, unravel_x = ravel_pytree(example)
    n = x_flat.shape[0]
    if x_flat.dtype != dtype:
        raise TypeError(f"the operator's input space has dtype {x_flat.dtype} but b has dtype {dtype}")
    out = jax.eval_shape(A, example)
    if jax.tree.structure(out) != jax.tree.structure(b) or any(
        o.shape != jnp.shape(leaf) for o, leaf in zip(jax.tree.leaves(out), jax.tree.leaves(b))
    ):
        raise ValueError(f"A(x) returns {out}, which does not match the shape of b {jax.tree.map(jnp.shape, b)}")
    out_dtypes = {o.dtype for o in jax.tree.leaves(out)}
    if out_dtypes != {dtype}:
        raise TypeError(f"A(x) returns dtype(s) {sorted(map(str, out_dtypes))} but b has dtype {dtype}")

    def flat_apply(v: jax.Array) -> jax.Array:
        return ravel_pytree(A(unravel_x(v)))[0]

    closed = jax.make_jaxpr(flat_apply)(x_flat)
    apply = JaxprApply(closed.jaxpr)
    params = tuple(closed.consts)
    m = b_flat.shape[0]
    _check_linear(apply, params, (m, n), dtype)
    x0_flat = None if x0 is None else _check_x0(x0, n, dtype)
    return FlatProblem(apply, params, b_flat, x0_flat, (m, n), unravel_x)


class JaxprApply:
    """``apply(params, v)`` evaluating a traced function with every array it closes over hoisted into
    ``params`` (so they are explicit, differentiable inputs). Equal jaxprs compare equal, so repeated
    calls with a new but identical function (a fresh ``jax.linearize``, a lambda) reuse one compiled
    solve; nothing is baked into the jaxpr but literals, which are part of its text."""

    def __init__(self, jaxpr: Any):
        self.jaxpr = jaxpr
        self._key = str(jaxpr)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JaxprApply) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __call__(self, params: tuple, v: jax.Array) -> jax.Array:
        return jaxpr_as_fun(ClosedJaxpr(self.jaxpr, list(params)))(v)[0]


def _check_linear(apply: Apply, params: Any, shape: tuple[int, int], dtype: Any) -> None:
    """Structural check (transposable by JAX) always; numerical check on random probes when concrete.

    ``jax.linear_transpose`` rejects ``tanh(Av)`` or ``(Av)**2`` but accepts affine maps ``Av + c``;
    the probe test ``||A(u+2w) - A(u) - 2A(w)||`` catches those (and piecewise-linear maps) when the
    parameters are concrete.
    """
    try:
        linear_map(apply, params, shape, dtype)
    except NotImplementedError as error:
        raise ValueError(f"A is not a linear function of its input: {error}") from None
    if not is_concrete(params):
        return
    rng = np.random.default_rng(0)
    u, w = (jnp.asarray(rng.standard_normal(shape[1]), dtype) for _ in range(2))
    au, aw, auw = apply(params, u), apply(params, w), apply(params, u - 2 * w)
    if not is_concrete(au, aw, auw):  # inside jit, even constant parameters give traced outputs
        return
    if not all(bool(jnp.all(jnp.isfinite(out))) for out in (au, aw, auw)):
        raise ValueError("A's output contains NaN or Inf (on random finite inputs)")
    scale = float(jnp.linalg.norm(au) + 2 * jnp.linalg.norm(aw))
    tol = 1e3 * float(jnp.finfo(dtype).eps) * max(scale, float(jnp.finfo(dtype).tiny))
    defect = float(jnp.linalg.norm(auw - au + 2 * aw))
    if not defect <= tol:
        raise ValueError(
            f"A is not a linear function of its input: ||A(u - 2w) - A(u) + 2A(w)|| = {defect:.3g} "
            f"on random probes (tolerance {tol:.3g}); an offset (A v + c) or a nonlinearity is not allowed"
        )
