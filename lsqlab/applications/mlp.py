"""A multilayer perceptron as a list of {"w", "b"} layers: the network the applications share.

f(x) = W_L a(... a(W_1 x + b_1) ...) + b_L, with a = tanh by default (smooth, so that Jacobians and
second derivatives used by the constraints exist everywhere).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Params = list[dict[str, jax.Array]]


def init(key: jax.Array, sizes: Sequence[int], dtype=jnp.float32) -> Params:
    """LeCun-normal weights (variance 1/fan_in) and zero biases for layer widths ``sizes``."""
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"need at least an input and an output width, all >= 1; got {list(sizes)}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (n_in, n_out), dtype) / jnp.sqrt(n_in), "b": jnp.zeros(n_out, dtype)}
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])
    ]


def apply(params: Params, x: jax.Array, activation: Callable[[jax.Array], jax.Array] = jnp.tanh) -> jax.Array:
    """The network on a batch (..., n_in) -> (..., n_out)."""
    for layer in params[:-1]:
        x = activation(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def count(params: Params) -> int:
    """Number of scalar parameters."""
    return sum(leaf.size for leaf in jax.tree.leaves(params))
