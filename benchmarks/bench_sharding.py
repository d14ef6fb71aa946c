"""The solver and the null-space method sharded over every device of one or several processes: time
per step, what each device holds, and no gathered copy of the sharded matrix or weights.

Two workloads, each with its rows spread over all devices (a 1-D mesh ``rows``):

  solve   a tall least-squares problem, A (rows-per-device * devices) x cols, row-sharded and made
          shard by shard (no process ever holds all of A): value and gradient of ||x||^2 in A and b
          (x = lsqlab.lstsq(A, b), tolerance 1e-6, at most 200 iterations) under jit;
  train   null-space Adam steps (lsqlab.nullspace.transform, sparsity mask on half the weights,
          closed form) of a linear model X W ~ Y, W (rows-per-device * devices) x cols, its mask and
          Adam moments row-sharded, the batch X (64 inputs) sharded along its columns to match, Y
          replicated.

For each: median ms per call, and per device from the compiled program's ``memory_analysis()``
(SPMD: one program, the same on every device) the arguments it holds (shards of A and b; of W,
its mask, Adam's two moments and X) and its temporaries, with the size of one shard, and the
largest array one collective moves (a vector at most: no matrix or weight is gathered or reshuffled). Where
the backend reports it (GPUs), each local device's peak memory in use is printed too. ``--check``
(on in ``--quick``) compares with the same run on unsharded arrays on one device.

    python benchmarks/bench_sharding.py --quick --cpu-devices 4      # 4 simulated CPU devices, seconds
    python benchmarks/bench_sharding.py                              # every local GPU (or CPU device)
    # several processes or hosts (CPU: gloo collectives; GPU: one process per host or per GPU):
    python benchmarks/bench_sharding.py --coordinator HOST:PORT --num-processes N --process-id I
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # lsqlab without installing it


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat, --check")
    parser.add_argument("--cpu-devices", type=int, help="simulate this many CPU devices per process")
    parser.add_argument("--rows-per-device", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=500)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="compare with one unsharded device")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0, for jax.distributed")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.rows_per_device, args.cols, args.repeats, args.check = 1024, 48, 1, True
        args.dtype = "float64"
    return args


def median_ms(fn, *args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    args = parse()
    if args.cpu_devices:  # before JAX starts: XLA fixes the device count then
        os.environ["JAX_PLATFORMS"] = "cpu"
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.cpu_devices}"
    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    if args.coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only; GPUs use NCCL
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)
    run(args)


def run(args: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from lsqlab import SolverOptions, constraints, lstsq, nullspace
    from lsqlab.sharding import largest_transfer

    mesh = Mesh(np.array(jax.devices()), ("rows",))
    devices, m, n, dtype = jax.device_count(), args.rows_per_device * jax.device_count(), args.cols, args.dtype
    rows, replicated = NamedSharding(mesh, PartitionSpec("rows")), NamedSharding(mesh, PartitionSpec())
    say = print if jax.process_index() == 0 else (lambda *a, **k: None)
    say(f"machine: {platform.machine()}, {jax.devices()[0].device_kind} x {devices} devices in "
        f"{jax.process_count()} process(es), jax {jax.__version__}, {dtype}")

    def sharded(shape: tuple[int, ...], seed: int, sharding=rows, kind: str = "normal") -> jax.Array:
        """A seeded array made block by block where it lives: block i of the rows from seed (seed, i)."""
        def block(index: tuple) -> np.ndarray:
            start, stop = index[0].start or 0, index[0].stop or shape[0]
            rng, block_shape = np.random.default_rng((seed, start)), (stop - start, *shape[1:])
            return rng.standard_normal(block_shape).astype(dtype) if kind == "normal" else rng.random(block_shape) < 0.5
        return jax.make_array_from_callback(shape, sharding, block)

    def report(name: str, fn, inputs: tuple, shard_bytes: int) -> None:
        compiled = jax.jit(fn).lower(*inputs).compile()
        memory = compiled.memory_analysis()
        moved = largest_transfer(compiled) * np.dtype(dtype).itemsize
        ms = median_ms(jax.jit(fn), *inputs, repeats=args.repeats)
        say(f"{name:<40} {ms:10.2f} ms   per device: arguments {memory.argument_size_in_bytes / 2**20:8.2f} MiB "
            f"(one shard {shard_bytes / 2**20:.2f} MiB), temporaries {memory.temp_size_in_bytes / 2**20:7.2f} MiB, "
            f"largest collective {moved / 2**20:.3f} MiB")
        for device in jax.local_devices():
            stats = device.memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                print(f"    process {jax.process_index()} {device}: peak {stats['peak_bytes_in_use'] / 2**20:.1f} MiB")

    A, b = sharded((m, n), 1), sharded((m,), 2)
    loss = lambda A, b: jnp.sum(lstsq(A, b, options=SolverOptions(atol=1e-6, btol=1e-6, maxiter=200))[0] ** 2)  # noqa: E731
    solve = jax.value_and_grad(loss, argnums=(0, 1))
    report(f"solve {m}x{n}: value and gradient", solve, (A, b), A.addressable_shards[0].data.nbytes)

    W, mask = sharded((m, n), 3), sharded((m, n), 4, kind="mask")
    Xt, Y = sharded((m, 64), 5), sharded((64, n), 6, replicated)  # a batch of 64 inputs, stored as X^T
    params, masks = {"W": W}, {"W": mask}
    tx = nullspace.transform(optax.adam(1e-3), constraints.sparsity(masks), gamma=1.0)
    model_loss = lambda p, Xt, Y: jnp.mean((Xt.T @ p["W"] - Y) ** 2)  # noqa: E731

    def step(p, state, Xt, Y):
        updates, state = tx.update(jax.grad(model_loss)(p, Xt, Y), state, p)
        return optax.apply_updates(p, updates), state

    state = tx.init(params)
    report(f"train W {m}x{n}: one null-space Adam step", step, (params, state, Xt, Y),
           W.addressable_shards[0].data.nbytes)

    if args.check:
        one = jax.devices()[0] if jax.process_count() == 1 else jax.local_devices()[0]
        gather = lambda tree: jax.tree.map(  # noqa: E731
            lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)
        local = lambda tree: jax.tree.map(lambda x: jax.device_put(x, one), gather(tree))  # noqa: E731
        got, expected = gather(jax.jit(solve)(A, b)), jax.jit(solve)(*local((A, b)))
        trained, _ = jax.jit(step)(params, state, Xt, Y)
        with jax.default_device(one):
            tx_one = nullspace.transform(optax.adam(1e-3), constraints.sparsity(local(masks)), gamma=1.0)
            p1, data = local(params), local((Xt, Y))
            reference = optax.apply_updates(p1, tx_one.update(jax.grad(model_loss)(p1, *data), tx_one.init(p1), p1)[0])
        errors = [np.max(np.abs(np.asarray(g) - np.asarray(e))) / max(np.max(np.abs(np.asarray(e))), 1e-300)
                  for g, e in zip(jax.tree.leaves((got, gather(trained))), jax.tree.leaves((expected, reference)))]
        say(f"matches one unsharded device: largest relative difference {max(errors):.1e}")
        assert max(errors) < (1e-8 if dtype == "float64" else 1e-3), errors


if __name__ == "__main__":
    main()
