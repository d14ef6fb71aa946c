"""Each results-table command keeps working: its --smoke mode writes the CSV + Markdown summary with a
row per method (the same code as the full run, on a tiny budget, into a temporary directory)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPTS = {  # script -> (table name, the column naming the method, methods that must appear)
    "app_equivariance.py": ("equivariance", "method", {"plain", "group_average", "null_space", "augmented_lagrangian"}),
    "app_sparsity.py": ("sparsity", "method", {"nullspace", "prune", "l1", "penalty"}),
    "app_gp.py": ("gp", "method", set()),
    "app_scores.py": ("scores", "method", {"unconstrained", "energy", "penalty", "nullspace"}),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_smoke_run_writes_the_table(script, tmp_path):
    name, column, methods = SCRIPTS[script]
    env = dict(os.environ, PYTHONPATH=str(ROOT), LSQLAB_SMOKE="1")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / f"{name}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert methods <= {row[column] for row in rows}
    assert (tmp_path / f"{name}_runs.csv").exists()
    assert (tmp_path / f"{name}.md").read_text().startswith("|")
