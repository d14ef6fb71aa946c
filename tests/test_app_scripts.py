"""Each results-table command keeps working, and a smoke run never touches the recorded tables: its
--smoke mode (the same code as the full run, on a tiny budget) writes the CSV + Markdown summary with a
row per method into the git-ignored artifacts/results/smoke/, leaves the recorded tables (package data)
byte for byte and `git status` as it was, and refuses --record."""

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsqlab.applications import tables

ROOT = Path(__file__).resolve().parent.parent
SMOKE_OUT = ROOT / "artifacts" / "results" / "smoke"

SCRIPTS = {  # script -> (table name, the column naming the method, methods that must appear)
    "app_equivariance.py": ("equivariance", "method", {"plain", "group_average", "nullspace", "augmented_lagrangian"}),
    "app_sparsity.py": ("sparsity", "method", {"plain", "nullspace", "prune", "l1", "penalty"}),
    "app_gp.py": ("gp", "method", {"held-out NLPD, random folds (lsqlab)", "marginal likelihood (exact GP, sklearn)"}),
    "app_scores.py": ("scores", "method", {"plain", "energy", "penalty", "nullspace"}),
}
WATCHED = ("benchmarks", "lsqlab/applications/results")  # where a results command used to write


def fingerprint() -> dict[str, str]:
    """SHA-256 of every recorded results file."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(tables.RECORDED.iterdir())}


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), LSQLAB_SMOKE="1")
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_smoke_run_writes_its_table_to_the_ignored_scratch_folder_only(script):
    name, column, methods = SCRIPTS[script]
    recorded, status = fingerprint(), git("status", "--porcelain", "--", *WATCHED)
    assert status.returncode == 0, f"the check needs a git checkout: {status.stderr}"
    result = run(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"written to {SMOKE_OUT}" in result.stdout
    written = [SMOKE_OUT / f"{name}{suffix}" for suffix in (".csv", "_runs.csv", ".md")]
    with open(written[0], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert methods <= {row[column] for row in rows}
    assert written[2].read_text().startswith("|")
    assert fingerprint() == recorded
    assert git("status", "--porcelain", "--", *WATCHED).stdout == status.stdout
    ignored = git("check-ignore", *map(str, written))
    assert ignored.stdout.split() == list(map(str, written)), f"not git-ignored: {written}"
    refused = run(script, "--record")
    assert refused.returncode == 2 and "refused on a smoke budget" in refused.stderr, refused.stderr[-2000:]


def test_scale_script_records_only_the_medium_size():
    refused = run("scale_sparsity.py", "--size", "small", "--record")
    assert refused.returncode == 2 and "refused on a smoke budget" in refused.stderr, refused.stderr[-2000:]
    refused = run("scale_sparsity.py", "--size", "medium", "--steps", "3", "--record")
    assert refused.returncode == 2 and "--steps, --sparsity or --seed" in refused.stderr, refused.stderr[-2000:]
