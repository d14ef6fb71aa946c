"""The comparison methods for constrained training: a quadratic penalty and an augmented Lagrangian.

Both take the same ``constraint(params, **constraint_args) -> c`` as :mod:`lsqlab.nullspace`, so that
every application compares like with like. Neither makes c = 0 exactly: the penalty only as mu -> oo,
the augmented Lagrangian only asymptotically (as the multipliers converge).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lsqlab.nullspace import Constraint


def quadratic_penalty(
    loss_fn: Callable[..., jax.Array], constraint: Constraint, mu: float
) -> Callable[..., jax.Array]:
    """L_mu(theta) = L(theta) + mu/2 ||c(theta)||^2.

    Returns ``penalized(params, *args, constraint_args=None, **kwargs)``, which calls
    ``loss_fn(params, *args, **kwargs)`` and ``constraint(params, **constraint_args)``.
    """
    if not mu >= 0:
        raise ValueError(f"mu must be >= 0, got {mu}")

    def penalized(params: Any, *args: Any, constraint_args: Mapping[str, Any] | None = None, **kwargs: Any):
        c = constraint(params, **(constraint_args or {}))
        return loss_fn(params, *args, **kwargs) + 0.5 * mu * jnp.sum(c**2)

    return penalized


class AugmentedLagrangianState(NamedTuple):
    """State of :func:`augmented_lagrangian`: the base optimiser's state and the multipliers lambda."""

    base_state: Any
    multipliers: jax.Array


def augmented_lagrangian(
    base: Any, constraint: Constraint, *, rho: float, num_constraints: int, dual_step: float | None = None
) -> Any:
    """Primal-dual steps on the augmented Lagrangian L(theta) + lambda^T c + rho/2 ||c||^2.

    ``update(grads, state, params, **constraint_args)`` takes grads = grad L(theta) and

      primal:  theta <- theta + base(grad L + J^T (lambda + rho c))    (descent, optax's convention)
      dual:    lambda <- lambda + eta c                                 (ascent; c at the old theta)

    with J^T y from one ``jax.vjp`` of c and the dual step eta = ``dual_step`` (default rho, the classical
    method of multipliers). A separate eta decouples the penalty weight rho from the speed of the
    multipliers, as in constrained deep learning (e.g. Cooper's dual learning rate): eta << rho keeps
    lambda from outrunning Adam-rescaled primal steps. Returns an ``optax.GradientTransformationExtraArgs``.
    On the test QP this converges with SGD as ``base`` (eta = rho or rho/10) but not with Adam, whose
    rescaled primal steps do not balance the dual ascent (see tests/test_constraints.py).
    """
    import optax  # optional dependency

    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if dual_step is None:
        dual_step = rho
    if not dual_step > 0:
        raise ValueError(f"dual_step must be > 0, got {dual_step}")
    base = optax.with_extra_args_support(base)

    def init(params: Any) -> AugmentedLagrangianState:
        dtype = ravel_pytree(params)[0].dtype
        return AugmentedLagrangianState(base.init(params), jnp.zeros(num_constraints, dtype))

    def update(grads: Any, state: AugmentedLagrangianState, params: Any = None, **constraint_args: Any):
        if params is None:
            raise ValueError("the augmented Lagrangian needs params: call update(grads, state, params)")
        c, vjp = jax.vjp(lambda theta: constraint(theta, **constraint_args), params)
        if c.shape != (num_constraints,):
            raise ValueError(f"the constraint returned shape {c.shape}, expected ({num_constraints},)")
        (constraint_grad,) = vjp(state.multipliers + rho * c)
        lagrangian_grad = jax.tree.map(jnp.add, grads, constraint_grad)
        step, base_state = base.update(lagrangian_grad, state.base_state, params)
        return step, AugmentedLagrangianState(base_state, state.multipliers + dual_step * c)

    return optax.GradientTransformationExtraArgs(init, update)
