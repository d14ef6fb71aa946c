"""The benchmark scripts keep running (their --quick mode); numbers are read in benchmarks/README.md."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_lstsq_benchmark_quick_mode_prints_its_table():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_lstsq.py"), "--quick"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("machine:")
    errors = [float(line.rsplit("relative error", 1)[1]) for line in lines if "relative error" in line]
    assert len(errors) == 2 and errors[0] > errors[1]  # a tighter backward tolerance, a better gradient
    assert sum("unrolled scan" in line for line in lines) == 2


def test_preconditioner_benchmark_quick_mode_shows_the_sketch_converging():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_preconditioners.py"), "--quick"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sketches = [line for line in result.stdout.splitlines() if " its " in line and " sketch" in line]
    assert len(sketches) == 5
    for row in sketches:
        assert int(row.split(" its")[0].split()[-1]) < 100, row
        assert float(row.split("rel. error")[1].split()[0]) < 1e-8, row


def test_hardening_benchmark_smoke_mode_writes_its_tables_elsewhere(tmp_path):
    """--smoke --out DIR writes the two tables there; its numbers show the fixed rules (every gradient
    error below 1e-10 at every damp) and preconditioned solves within 10x of SciPy on the formed A P."""
    import csv

    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_hardening.py"), "--smoke",
                             "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    gradients = list(csv.DictReader(open(tmp_path / "hardening_gradients.csv")))
    for row in gradients:  # the Python-float 0 rows have no damp derivative (nan)
        keys = ("err_db", "err_dA", "err_jvp_dx") + (() if "float" in row["damp"] else ("err_ddamp",))
        assert all(float(row[k]) < 1e-10 for k in keys), row
    for row in csv.DictReader(open(tmp_path / "hardening_preconditioned.csv")):
        assert float(row["lsqlab_P_err"]) <= 10 * float(row["scipy_AP_err"]), row


def test_nullspace_benchmark_quick_mode_prints_every_part():
    """The closed-form selection leaves theta_S exactly 0 and the generic path nearly; the dense Gram
    form and LSMR reach the same NAsym (the same steps, up to LSMR's tolerance)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_nullspace.py"), "--quick"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in result.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| p |") and "---" not in line]
    closed = [row for row in rows if row[2:3] == ["Selection, closed form"]]
    generic = [row for row in rows if row[2:3] == ["same c, generic LSMR"]]
    assert len(closed) == len(generic) == 2
    assert all(float(row[5]) == 0 for row in closed) and all(0 < float(row[5]) < 1e-5 for row in generic)
    assert sum(row[0].startswith("one ") for row in rows) == 4  # the cost of a pair, an iteration, a step
    nasym = {row[0]: float(row[4]) for row in rows if row[0] in ("LSMR, tol 1e-4", "dense Gram form")}
    assert abs(nasym["dense Gram form"] - nasym["LSMR, tol 1e-4"]) < 0.1 * nasym["LSMR, tol 1e-4"]
    assert any(row[0].startswith("Gram CG warm, 3 its") for row in rows)


def test_sharding_benchmark_quick_mode_on_four_cpu_devices():
    """Each simulated device holds one shard of A (its arguments are A's and b's shards), what is
    one collective moves is at most a vector (the solve's residual), and the sharded results match one unsharded
    device."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sharding.py"), "--quick",
                             "--cpu-devices", "4"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "x 4 devices in 1 process" in lines[0]
    rows = [line for line in lines if "per device:" in line]
    assert len(rows) == 2, rows
    for row in rows:  # a vector of m entries at most (the solve's residual), never a matrix
        m = int(row.split()[2 if row.startswith("train") else 1].split("x")[0])
        assert float(row.split("largest collective")[1].split()[0]) * 2**20 <= 8 * m, row
    arguments, shard = (float(rows[0].split(text)[1].split()[0]) for text in ("arguments", "one shard"))
    assert shard <= arguments < 1.1 * shard  # A's shard and b's: not the whole of A (4 shards)
    assert float(lines[-1].split("difference")[1]) < 1e-10
