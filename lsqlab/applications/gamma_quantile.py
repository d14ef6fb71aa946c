"""The Gamma quantile G^{-1}(u; shape) with derivatives in u and in the shape (implicit function theorem).

JAX has the regularised incomplete gamma function P(shape, x) = G(x; shape) (``gammainc``) but not its
inverse in x; the rational-quadratic random features (:mod:`.random_features`) draw Gamma(alpha) scale
mixtures through it and need d/dalpha.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammainc, gammaln


@jax.custom_jvp
def gamma_quantile(u: jax.Array, shape: jax.Array) -> jax.Array:
    """G^{-1}(u; shape): the u-quantile of Gamma(shape, 1), by bisection on log x (120 halvings).

    Derivatives by the implicit function theorem on P(shape, x) = u: dx = (du - dP/dshape dshape) / p(x).
    """
    low = jnp.full(jnp.shape(u), -250.0)
    high = jnp.full(jnp.shape(u), jnp.log(shape + 40.0 * jnp.sqrt(shape) + 100.0))

    def halve(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        below = gammainc(shape, jnp.exp(middle)) < u
        return jnp.where(below, middle, low), jnp.where(below, high, middle)

    low, high = jax.lax.fori_loop(0, 120, halve, (low, high))
    return jnp.exp(0.5 * (low + high))


@gamma_quantile.defjvp
def _gamma_quantile_jvp(primals, tangents):
    u, shape = primals
    du, dshape = tangents
    x = gamma_quantile(u, shape)
    density = jnp.exp((shape - 1.0) * jnp.log(x) - x - gammaln(shape))
    dcdf_dshape = jax.vmap(jax.grad(gammainc, argnums=0), in_axes=(None, 0))(shape, jnp.ravel(x)).reshape(x.shape)
    return x, (du - dcdf_dshape * dshape) / density
