"""Sparsity-constrained training at scale: time per step, memory and solver iterations.

Model: a tanh MLP (lsqlab.applications.mlp) of equal-width dense layers; --size full is
2048 -> 2048 x 12 -> 10, 50.4M parameters. Data: synthetic, generated on the device at every step:
x ~ N(0, I) (a fresh batch per step, the same sequence for every phase), labels argmax(x T) for a fixed
Gaussian linear teacher T. Realistic data is not the point here; the cost of a step is.

Three phases of the same number of Adam steps, on the same batches, float32:
  plain      Adam from the initialisation (the dense model; its time per step is the reference);
  mask       from the dense model, the null-space step for c = theta_S in closed form
             (lsqlab.applications.sparsity.hard_mask: zero the masked entries of gradient and step,
             set theta_S to 0), the lower bound of what the constraint can cost;
  nullspace  from the dense model, Adam through lsqlab.nullspace.transform with
             lsqlab.constraints.sparsity(mask), gamma = 1, order "both": the library's projection of a
             Selection constraint (closed form, elementwise; the mask is in the optimiser's state,
             not compiled in as a constant).
The mask: the smallest |w| of each weight matrix of the dense model (90% of them by default).

Reported (JSON and Markdown under --out): ms per step of each phase (median over chunks of steps,
compilation excluded and timed separately), the ratios to plain, peak device memory
(memory_stats()['peak_bytes_in_use'] after each phase, where the backend reports it) and the compiled
step's own memory analysis, solver iterations per step (0: closed form), ||c|| and max |theta_S| at the end, the masked
fraction, the training loss, and how far the nullspace parameters are from the closed-form ones.

    python benchmarks/scale_sparsity.py --size small      # CPU, seconds (the CI size)
    python benchmarks/scale_sparsity.py --size medium     # CPU, ~4M parameters, a few minutes
    python benchmarks/scale_sparsity.py --size full --out DIR   # one H100/H200: well under 5 minutes

Files go to artifacts/results/ (git-ignored; artifacts/results/smoke/ for --size small) or --out DIR.
`--size medium --record` (default --steps, --sparsity and --seed) overwrites the recorded
scale_sparsity_medium.{json,md} that ship with lsqlab and notebook 05 reads (lsqlab/applications/results/).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import constraints
from lsqlab.applications import mlp, sparsity, tables

SIZES = {
    "small": dict(width=64, depth=2, batch=32, steps=20, chunk=5),
    "medium": dict(width=1024, depth=4, batch=256, steps=60, chunk=10),
    "full": dict(width=2048, depth=12, batch=1024, steps=300, chunk=25),
}
CLASSES = 10
RECORDED_SIZE = "medium"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def layer_sizes(width: int, depth: int) -> list[int]:
    """width -> width x depth -> CLASSES: ``depth`` square hidden layers and a linear read-out."""
    return [width] * (depth + 1) + [CLASSES]


def batch(key: jax.Array, index: jax.Array, teacher: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """The batch of step ``index``: x ~ N(0, I), labels argmax(x T)."""
    x = jax.random.normal(jax.random.fold_in(key, index), (size, teacher.shape[0]), teacher.dtype)
    return x, jnp.argmax(x @ teacher, axis=-1)


def make_step(tx, data_key: jax.Array, teacher: jax.Array, batch_size: int):
    """One jitted Adam step of ``tx`` on the batch of ``index``; returns the loss, and the solver iterations
    and stop code of the step (0 and -1 without a null-space transform)."""

    def step(params, state, index):
        x, y = batch(data_key, index, teacher, batch_size)
        loss, grads = jax.value_and_grad(sparsity.cross_entropy)(params, x, y)
        updates, state = tx.update(grads, state, params)
        info = getattr(state, "info", None)
        if info is None:
            solver = (jnp.zeros([], jnp.int32), jnp.full([], -1, jnp.int32))
        else:
            solver = (info.iterations, info.istop)
        return optax.apply_updates(params, updates), state, loss, solver

    return jax.jit(step)


def memory_analysis(compiled) -> dict | None:
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
              "generated_code_size_in_bytes")
    return {field: int(getattr(analysis, field)) for field in fields if hasattr(analysis, field)}


def peak_memory() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if stats is None else stats.get("peak_bytes_in_use")


def run_phase(name: str, tx, params, data_key, teacher, cfg: dict) -> tuple[dict, object]:
    """Compile (timed), then ``steps`` steps in chunks; median ms/step over the chunks."""
    step = make_step(tx, data_key, teacher, cfg["batch"])
    state = tx.init(params)
    start = time.perf_counter()
    compiled = step.lower(params, state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    log(f"{name}: compiled in {compile_s:.1f} s")
    chunk_ms, losses, iterations, stops = [], [], [], []
    for first in range(0, cfg["steps"], cfg["chunk"]):
        start = time.perf_counter()
        chunk_losses, chunk_iterations = [], []
        for index in range(first, min(first + cfg["chunk"], cfg["steps"])):
            params, state, loss, solver = compiled(params, state, jnp.int32(index))
            chunk_losses.append(loss)
            chunk_iterations.append(solver)
        jax.block_until_ready(params)
        chunk_ms.append(1e3 * (time.perf_counter() - start) / len(chunk_losses))
        losses += [float(v) for v in chunk_losses]
        iterations += [int(its) for its, _ in chunk_iterations]
        stops += [int(stop) for _, stop in chunk_iterations]
        log(f"{name}: step {first + len(chunk_losses):4d}/{cfg['steps']}  {chunk_ms[-1]:8.2f} ms/step  "
            f"loss {losses[-1]:.4f}  solver iterations/step {iterations[-1]}")
    result = dict(
        ms_per_step=statistics.median(chunk_ms), ms_per_step_chunks=chunk_ms, compile_s=compile_s,
        loss_first=losses[0], loss_last=float(np.mean(losses[-cfg["chunk"]:])),
        solver_iterations_per_step=sorted(set(iterations)), solver_istop=sorted(set(stops)),
        peak_bytes_in_use=peak_memory(),
        compiled_memory=memory_analysis(compiled),
    )
    return result, params


def run(size: str, target_sparsity: float, seed: int, steps: int | None) -> dict:
    cfg = dict(SIZES[size])
    if steps is not None:
        cfg["steps"] = steps
    device = jax.devices()[0]
    x64 = jnp.zeros(()).dtype == jnp.float64
    precision = str(getattr(jax.config, "jax_default_matmul_precision", "not reported"))  # None: the backend's default
    log(f"jax {jax.__version__}, {device.platform} ({device.device_kind}), x64 {x64}, matmul precision {precision}")
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = mlp.init(keys[0], layer_sizes(cfg["width"], cfg["depth"]), jnp.float32)
    teacher = jax.random.normal(keys[1], (cfg["width"], CLASSES), jnp.float32)
    num_params = mlp.count(params)
    log(f"size {size}: {num_params:,} parameters, batch {cfg['batch']}, {cfg['steps']} steps per phase")
    adam = optax.adam(1e-4)

    plain, dense = run_phase("plain", adam, params, keys[2], teacher, cfg)
    start = time.perf_counter()
    mask = sparsity.magnitude_mask(dense, target_sparsity)
    mask_s = time.perf_counter() - start
    masked = sum(int(np.sum(m)) for m in jax.tree.leaves(mask))
    weights = sum(m.size for m in jax.tree.leaves(mask) if m.ndim >= 2)
    log(f"mask: {masked:,} of {weights:,} weights ({masked / weights:.3f}), built in {mask_s:.1f} s")

    closed_form, closed_params = run_phase("mask", sparsity.hard_mask(adam, mask), dense, keys[2], teacher, cfg)
    constrained, constrained_params = run_phase(
        "nullspace", sparsity.nullspace_optimizer(adam, mask), dense, keys[2], teacher, cfg)
    c = constraints.sparsity(mask)(constrained_params)
    difference = jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in zip(
        jax.tree.leaves(constrained_params), jax.tree.leaves(closed_params))))
    scale = jnp.sqrt(sum(jnp.sum(b**2) for b in jax.tree.leaves(closed_params)))
    return dict(
        size=size, config=cfg, parameters=num_params, masked_weights=masked, weight_matrices_entries=weights,
        masked_fraction_of_weights=masked / weights, masked_fraction_of_parameters=masked / num_params,
        target_sparsity=target_sparsity, seed=seed, mask_build_s=mask_s,
        plain=plain, mask=closed_form, nullspace=constrained,
        ratio_nullspace_to_plain=constrained["ms_per_step"] / plain["ms_per_step"],
        ratio_mask_to_plain=closed_form["ms_per_step"] / plain["ms_per_step"],
        constraint_norm_end=float(jnp.linalg.norm(c)), constraint_max_end=float(jnp.max(jnp.abs(c))),
        relative_difference_nullspace_vs_mask=float(difference / scale),
        machine=dict(jax=jax.__version__, platform=device.platform, device=device.device_kind,
                     python=platform.python_version(), host=platform.machine(), x64=bool(x64),
                     matmul_precision=precision),
    )


def gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f}"


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"# Sparsity-constrained training at scale ({result['size']})",
        "",
        f"{result['machine']['device']} ({result['machine']['platform']}), jax {result['machine']['jax']}, float32. "
        f"MLP {cfg['width']} -> {cfg['width']} x {cfg['depth']} -> {CLASSES} (tanh), "
        f"{result['parameters']:,} parameters; synthetic Gaussian inputs, linear-teacher labels; batch "
        f"{cfg['batch']}, {cfg['steps']} Adam steps per phase. Mask: "
        f"{result['masked_weights']:,} weights ({result['masked_fraction_of_weights']:.1%} of the weight matrices, "
        f"smallest |w| per matrix of the dense model).",
        "",
        "| phase | ms/step | x plain | compile (s) | solver iterations/step (istop) | loss first -> last "
        "| peak memory (GiB) | step temp memory (GiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("plain", "mask", "nullspace"):
        phase = result[name]
        temp = (phase["compiled_memory"] or {}).get("temp_size_in_bytes")
        its = "-"
        if name == "nullspace":
            iterations, stops = phase["solver_iterations_per_step"], phase["solver_istop"]
            its = f"{', '.join(map(str, iterations))} ({', '.join(map(str, stops))})"
        lines.append(
            f"| {name} | {phase['ms_per_step']:.2f} | {phase['ms_per_step'] / result['plain']['ms_per_step']:.2f} | "
            f"{phase['compile_s']:.1f} | {its} | {phase['loss_first']:.3f} -> {phase['loss_last']:.3f} | "
            f"{gib(phase['peak_bytes_in_use'])} | {gib(temp)} |"
        )
    lines += [
        "",
        f"After the nullspace phase: ||c|| = {result['constraint_norm_end']:.2e}, max |theta_S| = "
        f"{result['constraint_max_end']:.2e}; relative distance to the closed-form (mask) parameters "
        f"{result['relative_difference_nullspace_vs_mask']:.2e}. Peak memory is the process-wide peak after each "
        "phase (phases run in this order; it never decreases).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="steps per phase (default: by size)")
    tables.add_output_options(parser, __file__)
    args = parser.parse_args(argv)
    sparsity.check_sparsity(args.sparsity)
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    partial = None
    if args.size != RECORDED_SIZE:
        partial = f"--size {args.size} (only --size {RECORDED_SIZE} is recorded; give full-size runs an --out)"
    elif (args.steps, args.sparsity, args.seed) != (None, 0.9, 0):
        partial = "--steps, --sparsity or --seed other than the defaults"
    out = tables.output_directory(parser, args, smoke=args.size == "small", partial=partial)
    start = time.perf_counter()
    result = run(args.size, args.sparsity, args.seed, args.steps)
    result["total_s"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"scale_sparsity_{args.size}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    log(f"wrote {stem}.json and .md; total {result['total_s']:.1f} s")
    print(markdown(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
