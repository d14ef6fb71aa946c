"""``lstsq``: the public, differentiable, matrix-free least-squares solve.

    x* = LstSq(A, b, damp) = argmin_x ||A x - b||^2 + damp^2 ||x||^2
         (the minimum-norm minimiser when damp = 0 and the minimiser is not unique)
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lsqlab.gradients import RuleConfig, solve_lstsq
from lsqlab.lsmr import lsmr
from lsqlab.operators import as_operator, check_damp, is_concrete, matmul, read_back
from lsqlab.preconditioners import Preconditioned, Preconditioner, check_preconditioner_finite
from lsqlab.solver import NOT_LINEAR, LstSqInfo, Solver, SolverOptions


@partial(jax.jit, static_argnums=(0, 1, 2))
def _solve(apply: Any, config: RuleConfig, check_offset: bool, params: Any, b: jax.Array, damp: jax.Array,
           x0: jax.Array | None, preconditioner: Any) -> tuple[jax.Array, LstSqInfo]:
    """The differentiable solve, compiled once per (operator kind, options, shape). ``check_offset``:
    A(0) = 0 is checked at run time (istop 10 otherwise), for functions whose parameters were traced
    so that the eager linearity probe could not run."""
    x, info = solve_lstsq(apply, config, params, b, damp, x0, preconditioner)
    if check_offset:
        offset = apply(params, jnp.zeros(config.shape[1], b.dtype))
        info = info._replace(istop=jnp.where(jnp.any(jnp.abs(offset) > 0), NOT_LINEAR, info.istop))
    return x, info


def lstsq(
    A: Any,
    b: Any,
    *,
    damp: float | jax.Array = 0.0,
    x0: Any = None,
    domain: Any = None,
    options: SolverOptions | None = None,
    backward: SolverOptions | None = None,
    assume_full_rank: bool = True,
    solver: Solver = lsmr,
    preconditioner: Preconditioner | None = None,
) -> tuple[Any, LstSqInfo]:
    """Solve min ||A x - b||^2 + damp^2 ||x||^2 matrix-free, with exact derivatives.

    Args:
      A: a 2-D array, or a function ``v -> A v`` linear in ``v`` (pytrees allowed) that may close over
        arrays; ``A^T u`` is derived by JAX. Gradients flow to every array it closes over.
      b: right-hand side (1-D array; a pytree matching ``A``'s output for a function ``A``).
      damp: Tikhonov damping >= 0 (differentiable): a number, an array or a traced value; every branch
        on it is taken by its value at run time, so ``vmap`` over damp values works.
      x0: warm start (not differentiated); for a function ``A`` it also fixes the input space.
      domain: the input space of a function ``A`` when no ``x0`` is given (arrays or ShapeDtypeStructs).
      options: the solver's stopping rules (default ``SolverOptions()``: SciPy's ``lsmr`` defaults).
      backward: options of the solves inside the derivative rules (default: ``options``).
      assume_full_rank: for damp = 0, assume A has full column (tall) or row (wide) rank (with damp > 0
        the rules are exact at any rank). Set False for rank-deficient problems: exact first
        derivatives at constant rank when undamped, and the row-space part of each derivative kept
        apart from the O(1 / damp^2) null-space part when damped, for one more solve forward and one
        more backward.
      solver: a :class:`~lsqlab.solver.Solver`, ``(op, b, damp, x0, options) -> (x, info)``, returning LstSq.
      preconditioner: a right preconditioner P from :mod:`lsqlab.preconditioners` (the solver runs on
        [A P; damp P] and returns x = P y; the derivative rules' solves are preconditioned too). The
        answer does not depend on P: a wide problem with damp 0 is refused (a right preconditioner
        changes its minimum-norm answer), or, with a traced damp that is 0, solved without P. The
        stop code is checked on the true residual (istop 9 when it does not hold there).

    Returns:
      ``(x, info)`` with ``info`` an :class:`~lsqlab.solver.LstSqInfo` (iterations, istop and its
      ``reason``, ||r||, ||A^T r||, estimates of ||A|| and cond(A), ||x||). Non-convergence is
      reported in ``info.istop`` (7: iteration limit; 8: NaN/Inf met; 9: not trusted; 10: A(0) != 0),
      never raised under ``jit``.

    Sharded inputs (several devices of one host, or several processes under ``jax.distributed``),
    eagerly or under ``jit``: with A and b sharded by rows every product runs on each device's own
    rows (A v locally; A^T u locally, then one all-reduce of n entries) and nothing gathers A; the
    eager checks reduce on the devices and read back one scalar. x and ``info`` come back replicated
    over A's devices; gradients keep the sharding of the input they belong to (dA like A, db like b).
    """
    check_damp(damp)
    problem = as_operator(A, b, x0, domain)
    if preconditioner is not None:
        solver = Preconditioned(solver)
        _check_preconditioner(preconditioner, problem.shape, damp, x0)
        preconditioner = jax.lax.stop_gradient(preconditioner)
    forward = SolverOptions() if options is None else options
    backward = forward if backward is None else backward
    for given in (forward, backward):
        if not isinstance(given, SolverOptions):
            raise TypeError(f"options and backward must be SolverOptions or None, got {type(given).__name__}")
        given.check_static()
    config = RuleConfig(
        solver=solver, forward=forward, backward=backward,
        shape=problem.shape, assume_full_rank=assume_full_rank,
    )
    x0_flat = None if problem.x0 is None else jax.lax.stop_gradient(problem.x0)
    damp_array = jnp.asarray(damp, problem.b.dtype)
    check_offset = callable(A) and not is_concrete(problem.params)
    scale = _matrix_scale(problem)
    if scale != 1:  # LstSq(A, b, damp) = s LstSq(s A, b, s damp), s a power of two: exact
        x, info = _solve(problem.apply, config, False, problem.params * scale, problem.b, damp_array * scale,
                         None if x0_flat is None else x0_flat / scale, preconditioner)
        x = x * scale
        info = info._replace(normar=info.normar / scale, norma=info.norma / scale, normx=info.normx * scale)
    else:
        x, info = _solve(problem.apply, config, check_offset, problem.params, problem.b, damp_array, x0_flat,
                         preconditioner)
    return problem.unravel_x(x), info


def _matrix_scale(problem: Any) -> float:
    """A power of two s with s max|A| near 1 when a concrete matrix A has entries so large or small
    (beyond 2^(+-emax/4)) that LSMR's products of two norms would overflow or underflow; else 1."""
    if problem.apply is not matmul or not is_concrete(problem.params):
        return 1.0
    largest = float(read_back(_largest_magnitude, problem.params))
    bound = 2.0 ** (jnp.finfo(problem.b.dtype).maxexp // 4)
    if largest == 0 or 1 / bound <= largest <= bound:
        return 1.0
    return 2.0 ** -round(np.log2(largest))


@jax.jit
def _largest_magnitude(A: jax.Array) -> jax.Array:
    """max |A_ij| (0 for an empty A), reduced where A lives: a scalar any process can read."""
    return jnp.max(jnp.abs(A), initial=0)


def _check_preconditioner(preconditioner: Preconditioner, shape: tuple[int, int], damp: Any, x0: Any) -> None:
    m, n = shape
    rows = jnp.shape(preconditioner.apply(jnp.zeros(preconditioner.size)))[0]
    if rows != n:
        raise ValueError(f"the preconditioner maps to R^{rows} but A has {n} columns")
    if x0 is not None:
        raise ValueError("x0 cannot be combined with a preconditioner (the solver works in P's coordinates)")
    check_preconditioner_finite(preconditioner)
    if m < n and is_concrete(damp) and float(damp) == 0:
        raise ValueError(
            "a right preconditioner changes the minimum-norm solution of a wide undamped problem; "
            "use damp > 0 or no preconditioner"
        )
