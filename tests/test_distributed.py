"""Across processes: two CPU processes on 127.0.0.1 under ``jax.distributed`` (gloo collectives, 4
global devices) solve and differentiate a row-sharded tall problem, build a sketch preconditioner
under jit and train with a sparsity constraint on row-sharded weights; the results match the same
functions run on unsharded arrays in this process. Before: the eager solve failed in the finiteness
check (``np.asarray`` of an array spread over processes), as did the selection's mask count and the
sketch preconditioner under jit (its rank read back as a Python int)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import distributed_worker as worker

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cluster(out: Path) -> None:
    """Start the worker processes and wait; on failure or timeout, fail with every process's output."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    port = free_port()
    processes = [subprocess.Popen([sys.executable, worker.__file__, str(i), str(PROCESSES), str(port), str(out)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for i in range(PROCESSES)]
    outputs, failed = [], False
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            outputs.append(process.communicate()[0] + "\n[killed after 240 s]")
        failed |= process.returncode != 0
    report = "\n".join(f"--- process {i} ---\n{text[-4000:]}" for i, text in enumerate(outputs))
    assert not failed and out.exists(), report


def test_two_processes_match_one(tmp_path):
    out = tmp_path / "results.npz"
    run_cluster(out)
    got = np.load(out)
    data = {name: jnp.asarray(value) for name, value in worker.problem().items()}
    expected = {**worker.solve_and_differentiate(data["A"], data["b"]),
                **worker.preconditioned(data["A"]),
                **worker.train(data["w"], jnp.zeros(data["Y"].shape[1]), data["mask"], data["X"], data["Y"])}
    assert set(got.files) == set(expected)
    assert int(got["istop"]) in (1, 2)
    for name, value in expected.items():
        value = np.asarray(value)
        scale = max(np.max(np.abs(value), initial=0), 1e-300)
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-9 * scale, err_msg=name)
    assert np.all(got["w_trained"][np.asarray(data["mask"])] == 0)  # the constraint holds exactly
