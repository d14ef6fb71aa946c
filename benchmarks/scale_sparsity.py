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

Each phase runs through lsqlab.applications.training.train, in compiled chunks of steps. Reported (JSON
and Markdown under --out): ms per step of each phase (the loop's statistic: median over chunks of chunk
wall time / chunk steps, compilation excluded and timed separately), the ratios to plain, peak device
memory (memory_stats()['peak_bytes_in_use'] after each phase, where the backend reports it) and the
compiled chunk's own memory analysis, solver iterations per step (0: closed form; read from the loop's
Trained.projection), ||c|| and max |theta_S| at the end, the masked fraction, the training loss, and how
far the nullspace parameters are from the closed-form ones.

    python benchmarks/scale_sparsity.py --size small      # CPU, seconds (the CI size)
    python benchmarks/scale_sparsity.py --size medium     # CPU, ~4M parameters, 16 s on 2 cores
    python benchmarks/scale_sparsity.py --size full --out DIR   # one H100/H200: well under 5 minutes

Files go to artifacts/results/ (git-ignored; artifacts/results/smoke/ for --size small) or --out DIR.
`--size medium --record` (default --steps, --sparsity and --seed) overwrites the recorded
scale_sparsity_medium.{json,md} that ship with lsqlab and notebook 05 reads (lsqlab/applications/results/).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lsqlab import constraints
from lsqlab.applications import mlp, sparsity, tables, training

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


def run_phase(name: str, tx, params, data_key: jax.Array, teacher: jax.Array, cfg: dict) -> tuple[dict, object]:
    """``cfg["steps"]`` steps of ``tx`` through :func:`lsqlab.applications.training.train`, ``cfg["chunk"]``
    per compiled chunk; the batch of step t is :func:`batch` of t (the same for every phase)."""

    def draw(index: jax.Array, fixed: tuple[jax.Array, jax.Array]) -> tuple[tuple[jax.Array, jax.Array], dict]:
        return batch(fixed[0], index, fixed[1], cfg["batch"]), {}

    batches = training.Batches(jnp.arange(cfg["steps"]), draw, (data_key, teacher))
    trained = training.train(sparsity.cross_entropy, tx, params, batches, chunk=cfg["chunk"])
    solver = trained.projection
    stats = jax.devices()[0].memory_stats()
    result = dict(
        ms_per_step=trained.ms_per_step, ms_per_step_chunks=trained.chunk_ms.tolist(), compile_s=trained.compile_s,
        loss_first=float(trained.losses[0]), loss_last=float(np.mean(trained.losses[-cfg["chunk"]:])),
        solver_iterations_per_step=[0] if solver is None else sorted(set(solver.iterations.tolist())),
        solver_istop=[-1] if solver is None else sorted(set(solver.istop.tolist())),
        peak_bytes_in_use=None if stats is None else stats.get("peak_bytes_in_use"),
        compiled_memory=trained.memory,
    )
    log(f"{name}: {cfg['steps']} steps, {result['ms_per_step']:.2f} ms/step (median of {len(trained.chunk_ms)} "
        f"chunks), compiled in {trained.compile_s:.1f} s, loss {result['loss_first']:.4f} -> {result['loss_last']:.4f}")
    return result, trained.params


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
    try:
        sparsity.check_sparsity(args.sparsity)
    except ValueError as error:
        parser.error(str(error))
    partial = None
    if args.size != RECORDED_SIZE:
        partial = f"--size {args.size} (only --size {RECORDED_SIZE} is recorded; give full-size runs an --out)"
    elif (args.steps, args.sparsity, args.seed) != (None, 0.9, 0):
        partial = "--steps, --sparsity or --seed other than the defaults"
    out = tables.output_directory(parser, args, smoke=args.size == "small", partial=partial)
    chunk = SIZES[args.size]["chunk"]
    if args.steps is not None and (args.steps < 1 or args.steps % chunk):
        parser.error(f"--steps must be a positive multiple of {chunk} (the chunk of --size {args.size}), "
                     f"got {args.steps}")
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
