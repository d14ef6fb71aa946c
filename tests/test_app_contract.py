"""Every application exposes the same few names (the contract README's "Adding an application" describes),
and its table script is the same thin command. A new application is checked by adding it to APPLICATIONS."""

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from lsqlab.applications import equivariance, gp_hyperparameters, scores, sparsity, tables

ROOT = Path(__file__).resolve().parent.parent
APPLICATIONS = {"equivariance": equivariance, "sparsity": sparsity, "scores": scores, "gp": gp_hyperparameters}
RETIRED_NAMES = {"null_space", "unconstrained", "dense"}  # one name per baseline: "plain", "nullspace"


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_application_exposes_methods_budget_run_and_tables(name):
    app = APPLICATIONS[name]
    assert isinstance(app.METHODS, tuple) and app.METHODS and all(m.isidentifier() for m in app.METHODS)
    assert not RETIRED_NAMES & {part for m in app.METHODS for part in (m, m.rsplit("_", 1)[0])}, app.METHODS
    assert dataclasses.is_dataclass(app.Budget) and app.Budget.__dataclass_params__.frozen
    full = app.Budget()
    assert isinstance(app.SMOKE, app.Budget) and app.SMOKE != full
    assert full.seeds and all(isinstance(seed, int) for seed in full.seeds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.seeds = (0,)
    assert list(inspect.signature(app.run).parameters)[:3] == ["method", "seed", "budget"]
    assert app.TABLES and all(isinstance(t, tables.Table) and t.name == key for key, t in app.TABLES.items())


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_table_script_is_the_shared_command(name):
    """benchmarks/app_<name>.py only configures the process and calls tables.main on its application."""
    source = (ROOT / "benchmarks" / f"app_{name}.py").read_text()
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and ast.unparse(node.func) == "tables.main"]
    assert len(calls) == 1, f"app_{name}.py should call tables.main once"
    functions = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)]
    assert not functions, f"app_{name}.py defines {[f.name for f in functions]}: that belongs in the application module"
