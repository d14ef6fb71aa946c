"""One training loop for the applications: optax steps in compiled chunks, timed and read one way.

Step t, from parameters theta and optimiser state s:

    batch, args = draw(per_step[t], data)
    L_t, g = value_and_grad(loss)(theta, batch)
    u, s = tx.update(g, s, theta, **args)            (args: the constraint's arguments, e.g. its points)
    theta = theta + u

Any optax transformation works unchanged: plain Adam, a hard mask, the null-space transform, the augmented
Lagrangian. ``optax.with_extra_args_support`` lets those that take no ``args`` ignore them, so the loop has
no case per optimiser. A chunk of steps is one ``lax.scan``; it is compiled before anything is timed, and
the data are arguments of the compiled chunk, so one executable serves every seed of the same shapes as
long as the application passes the same loss, optimiser and draw objects (built once per method and
budget, e.g. with ``functools.lru_cache``).

The timing statistic, the only one the applications report as ``ms_per_step``: the median over chunks of
(wall time of the chunk, up to its outputs being ready) / (steps in the chunk). Evaluation runs between
chunks and is not timed. Solver diagnostics: the null-space transform's
:class:`~lsqlab.nullspace.ProjectionInfo` of every step, found in the optimiser state wherever the transform
sits (``Trained.projection``, stacked over steps).
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from lsqlab.nullspace import NullSpaceState, ProjectionInfo

Params = Any


class Batches(NamedTuple):
    """Where each step's data come from.

    per_step: a pytree of arrays whose leading axis has one entry per step (PRNG keys, batch indices);
    draw: ``(per_step[t], data) -> (batch, constraint_args)``, traced inside the compiled step;
    data: the arrays ``draw`` reads (arguments of the compiled chunk, not constants baked into it).
    """

    per_step: Any
    draw: Callable[[Any, Any], tuple[Any, dict]]
    data: Any = ()


class Trained(NamedTuple):
    """What :func:`train` returns.

    losses: the loss of each step's batch at the step's starting parameters.
    ms_per_step: median over chunks of chunk wall time / chunk steps (see the module docstring).
    chunk_ms: the per-chunk values that median is taken over. compile_s: compiling the chunk in this call
      (about 0 when an earlier call with the same loss, optimiser and draw objects compiled it).
    memory: the compiled chunk's ``memory_analysis()`` fields (bytes), None where the backend gives none.
    projection: the null-space transform's ProjectionInfo of every step (NumPy, leading axis = steps), None
      when the optimiser has no null-space transform.
    history: ``{"step": t, **evaluate(theta_t)}`` after each chunk.
    """

    params: Params
    losses: np.ndarray
    ms_per_step: float
    chunk_ms: np.ndarray
    compile_s: float
    memory: dict | None
    projection: ProjectionInfo | None
    history: list[dict]


def projection_info(state: Any) -> ProjectionInfo | None:
    """The ProjectionInfo of the null-space transform inside an optimiser state (None if there is none)."""
    found = [leaf for leaf in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, NullSpaceState))
             if isinstance(leaf, NullSpaceState)]
    if len(found) > 1:
        raise ValueError(f"the optimiser state holds {len(found)} null-space transforms; expected at most one")
    return found[0].info if found else None


def train(
    loss: Callable[[Params, Any], jax.Array],
    tx: optax.GradientTransformation,
    params: Params,
    batches: Batches,
    *,
    chunk: int | None = None,
    evaluate: Callable[[Params], dict] | None = None,
) -> Trained:
    """Run one step per entry of ``batches.per_step``, ``chunk`` steps per compiled ``lax.scan``.

    ``chunk`` must divide the number of steps (default: all steps in one chunk). Returns the final
    parameters and the record described in :class:`Trained`.
    """
    steps = _step_count(batches.per_step)
    chunk = steps if chunk is None else chunk
    if not (isinstance(chunk, int) and 1 <= chunk and steps % chunk == 0):
        raise ValueError(f"chunk must be a positive integer that divides the {steps} steps, got {chunk!r}")
    inputs = [jax.device_put(jax.tree.map(lambda a: a[i * chunk:(i + 1) * chunk], batches.per_step))
              for i in range(steps // chunk)]
    carry = (params, tx.init(params))
    started = time.perf_counter()
    compiled = _compiled_chunk(loss, tx, batches.draw, (carry, inputs[0], batches.data))
    compile_s = time.perf_counter() - started
    losses, infos, chunk_ms, history = [], [], [], []
    for i, chunk_inputs in enumerate(inputs):
        started = time.perf_counter()
        carry, (values, info) = jax.block_until_ready(compiled(carry, chunk_inputs, batches.data))
        chunk_ms.append(1e3 * (time.perf_counter() - started) / chunk)
        losses.append(np.asarray(values))
        infos.append(info)
        if evaluate is not None:
            history.append({"step": (i + 1) * chunk, **evaluate(carry[0])})
    projection = None if infos[0] is None else jax.tree.map(lambda *a: np.concatenate(a), *infos)
    return Trained(carry[0], np.concatenate(losses), statistics.median(chunk_ms), np.asarray(chunk_ms), compile_s,
                   _memory(compiled), projection, history)


_COMPILED: OrderedDict = OrderedDict()  # (loss, tx, draw, argument types) -> compiled chunk, least recent first
_COMPILED_KEPT = 8  # each XLA:CPU executable holds memory maps: keep a few, not every one ever built


def _compiled_chunk(loss: Callable, tx: optax.GradientTransformation, draw: Callable, arguments: tuple) -> Any:
    """The chunk ``(carry, inputs, data) -> (carry, (losses, infos))`` compiled for ``arguments``' types,
    reused while the same loss, optimiser and draw objects meet arguments of the same types (every seed
    of a table, when the application builds them once per method and budget)."""
    leaves, structure = jax.tree.flatten(arguments)
    key = (loss, tx, draw, structure, tuple(jax.typeof(leaf) for leaf in leaves))
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    update = optax.with_extra_args_support(tx).update

    def step(carry: tuple, step_input: Any, data: Any) -> tuple[tuple, tuple]:
        theta, state = carry
        batch, constraint_args = draw(step_input, data)
        value, grads = jax.value_and_grad(loss)(theta, batch)
        updates, state = update(grads, state, theta, **constraint_args)
        return (optax.apply_updates(theta, updates), state), (value, projection_info(state))

    def run_chunk(carry: tuple, inputs: Any, data: Any) -> tuple[tuple, tuple]:
        return jax.lax.scan(lambda c, x: step(c, x, data), carry, inputs)

    _COMPILED[key] = jax.jit(run_chunk).lower(*arguments).compile()
    if len(_COMPILED) > _COMPILED_KEPT:
        _COMPILED.popitem(last=False)
    return _COMPILED[key]


def _step_count(per_step: Any) -> int:
    lengths = {np.shape(leaf)[0] if np.ndim(leaf) else 0 for leaf in jax.tree.leaves(per_step)}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"per_step must be arrays with one common leading axis >= 1 (the steps), got lengths "
                         f"{sorted(lengths)}")
    return lengths.pop()


def _memory(compiled: Any) -> dict | None:
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
              "generated_code_size_in_bytes")
    return {field: int(getattr(analysis, field)) for field in fields if hasattr(analysis, field)}
