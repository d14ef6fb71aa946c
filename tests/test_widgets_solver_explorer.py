"""The solver explorer without a kernel: its curves are the solvers' traces; bad values leave them intact."""

import jax.numpy as jnp
import numpy as np
import pytest

from lsqlab.cgls import cgls_trace
from lsqlab.lab.convergence import SOLVERS, compare_solvers, conditioned_problem, iterations_against_condition
from lsqlab.lsmr import lsmr_trace
from lsqlab.operators import linear_map, matmul
from lsqlab.solver import STOP_REASONS, SolverOptions
from lsqlab.widgets.solver_explorer import PANELS, SWEEP_CONDS, SolverExplorer, stop_index, trace_index

SMALL = dict(rows=60, cols=20, cond=10.0, iterations=40, tol=1e-8)


def drawn(explorer, solver, panel):
    return np.asarray(explorer.figure.data[trace_index(solver, panel)].y)


def reference_traces(m, n, cond, iterations, tol):
    problem = conditioned_problem(m, n, cond)
    A = jnp.asarray(problem.A)
    op = linear_map(matmul, A, A.shape, A.dtype)
    options = SolverOptions(atol=tol, btol=tol)
    b = jnp.asarray(problem.b)
    return lsmr_trace(op, b, 0.0, iterations, options), cgls_trace(op, b, 0.0, iterations, options)


def test_problem_has_the_requested_spectrum_and_solution():
    problem = conditioned_problem(50, 20, 1e3)
    s = np.linalg.svd(problem.A, compute_uv=False)
    np.testing.assert_allclose(s[0] / s[-1], 1e3, rtol=1e-8)
    np.testing.assert_allclose(problem.x_star, np.linalg.lstsq(problem.A, problem.b, rcond=None)[0], rtol=1e-8)


def test_curves_are_the_traces_of_lsmr_and_cgls():
    explorer = SolverExplorer(**SMALL)
    assert explorer.is_live
    lsmr, cgls = reference_traces(60, 20, 10.0, 40, 1e-8)
    np.testing.assert_allclose(drawn(explorer, "LSMR", "normr"), lsmr.normr)
    np.testing.assert_allclose(drawn(explorer, "LSMR", "normar"), lsmr.normar)
    np.testing.assert_allclose(drawn(explorer, "CGLS", "normr"), cgls.normr)
    np.testing.assert_allclose(drawn(explorer, "CGLS", "normar"), cgls.normar)


def drawn_stops(explorer):
    return [(list(explorer.figure.data[stop_index(s, p)].x), list(explorer.figure.data[stop_index(s, p)].y))
            for s in SOLVERS for p in PANELS]


def test_readout_and_stop_markers_agree_and_follow_the_tolerance():
    explorer = SolverExplorer(**SMALL)
    curves = compare_solvers(conditioned_problem(60, 20, 10.0), 40, 1e-8)
    assert curves["LSMR"].error[-1] < 1e-8 and curves["LSMR"].stop_code == 2
    assert STOP_REASONS[2] in explorer.readout.value
    for solver, c in curves.items():  # the error read out is the error at the stop, where the marker is
        stop = c.stop_iteration
        assert stop is not None and f"stops at iteration {stop} with error {c.error[stop - 1]:.2e}" in \
            explorer.readout.value
        for panel in PANELS:
            marker = explorer.figure.data[stop_index(solver, panel)]
            assert list(marker.x) == [stop] and marker.y[0] == drawn(explorer, solver, panel)[stop - 1]
    before = drawn_stops(explorer)
    explorer.tol.value = 1e-4  # the slider moves what is drawn: each solver stops earlier
    loose = compare_solvers(conditioned_problem(60, 20, 10.0), 40, 1e-4)
    assert drawn_stops(explorer) != before and "tolerance 1e-04" in explorer.readout.value
    for solver in SOLVERS:
        assert explorer.figure.data[stop_index(solver, "error")].x[0] == loose[solver].stop_iteration
        assert loose[solver].stop_iteration < curves[solver].stop_iteration
    explorer.iterations.value = 3  # no stop test holds: no marker, and the last error is read out
    assert all(x == [] for x, _ in drawn_stops(explorer))
    assert f"error after 3 iterations {loose['LSMR'].error[2]:.2e}" in explorer.readout.value


def test_moving_controls_redraws_in_place():
    explorer = SolverExplorer(**SMALL)
    figure, before = explorer.figure, drawn(explorer, "LSMR", "error")
    explorer.cond.value = 1e4
    after = drawn(explorer, "LSMR", "error")
    assert explorer.figure is figure and not np.allclose(before, after)
    assert after[-1] > 1e-3  # cond^2 = 1e8: 40 iterations are far from enough
    explorer.iterations.value = 25
    assert len(drawn(explorer, "CGLS", "normr")) == 25
    explorer.rows.value = 15  # a wide problem: 15 x 20
    assert "15 × 20" in explorer.readout.value


@pytest.mark.parametrize("control, value, words", [
    ("cond", 0.5, "condition number must be"),
    ("cond", 1e20, "numerically singular"),
    ("rows", 0, "rows and columns"),
    ("cols", -3, "rows and columns"),
])
def test_bad_value_shows_a_message_and_keeps_the_figure(control, value, words):
    explorer = SolverExplorer(**SMALL)
    before = drawn(explorer, "LSMR", "normr")
    setattr(getattr(explorer, control), "value", value)
    assert words in explorer.message.value
    np.testing.assert_array_equal(drawn(explorer, "LSMR", "normr"), before)
    getattr(explorer, control).value = SMALL[control]
    assert explorer.message.value == ""


def test_static_fallback_redraws_into_an_output():
    explorer = SolverExplorer(**SMALL, live=False)
    assert not explorer.is_live and explorer.static_view in explorer.children
    (before,) = explorer.static_view.outputs
    explorer.cond.value = 1e3
    (after,) = explorer.static_view.outputs
    assert after is not before and "text/html" in after["data"]


def test_curves_do_not_depend_on_the_traced_length():
    problem = conditioned_problem(60, 20, 1e3)
    short, long = compare_solvers(problem, 30), compare_solvers(problem, 100)
    np.testing.assert_allclose(short["LSMR"].error, long["LSMR"].error[:30])
    assert short["CGLS"].stop_iteration is None and "no stop test" in short["CGLS"].stop_reason


def test_one_solver_alone_gives_the_same_curves_as_both():
    problem = conditioned_problem(60, 20, 1e3)
    alone = compare_solvers(problem, 40, solvers=("LSMR",))
    assert list(alone) == ["LSMR"]
    np.testing.assert_allclose(alone["LSMR"].error, compare_solvers(problem, 40)["LSMR"].error, rtol=1e-12)
    with pytest.raises(ValueError, match="solvers"):
        compare_solvers(problem, 40, solvers=("GMRES",))


def test_preconditioned_curves_are_the_original_problems_residuals():
    problem = conditioned_problem(60, 20, 1e4)
    curves = compare_solvers(problem, 40, 1e-10, "sketch")["LSMR"]
    assert curves.error[-1] < 1e-9 and curves.stop_iteration < 40
    lsmr = compare_solvers(problem, 40, 1e-10)["LSMR"]
    assert lsmr.error[-1] > 1e-3  # unpreconditioned: far from converged at cond 1e4
    # the drawn ||r_k|| and ||A^T r_k|| are the original problem's, recomputed from x_k
    assert curves.normar[-1] < 1e-9 * np.linalg.norm(problem.A.T @ problem.b)
    np.testing.assert_allclose(curves.normr[-1], np.linalg.norm(problem.b - problem.A @ problem.x_star), rtol=1e-8)


def test_preconditioner_menu_redraws_and_rejects_the_sketch_on_wide_problems():
    explorer = SolverExplorer(**{**SMALL, "cond": 1e4})
    before = drawn(explorer, "LSMR", "error")
    explorer.preconditioner.value = "sketch"
    after = drawn(explorer, "LSMR", "error")
    assert after[-1] < 1e-8 < before[-1] and "preconditioner: sketch" in explorer.readout.value
    explorer.rows.value = 15  # wide: the sketch does not apply; message, figure kept
    assert "tall problem" in explorer.message.value
    np.testing.assert_array_equal(drawn(explorer, "LSMR", "error"), after)
    explorer.preconditioner.value = "Jacobi"
    assert explorer.message.value == "" and "15 × 20" in explorer.readout.value


def test_sweep_button_plots_iterations_against_condition():
    explorer = SolverExplorer(**{**SMALL, "iterations": 200, "tol": 1e-6})
    explorer.sweep_button.click()
    by_name = {trace.name: np.asarray(trace.y, dtype=float) for trace in explorer.sweep_figure.data}
    counts = iterations_against_condition(60, 20, SWEEP_CONDS, 1e-6, 200)
    for name, values in counts.items():
        np.testing.assert_array_equal(by_name[name], values)
    assert np.isnan(by_name["none"][-1]) and np.all(by_name["sketch"] < 60)  # cond 1e10: only the sketch
