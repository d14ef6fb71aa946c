"""The adjoint explorer and its experiment without a kernel (three tolerances, to keep compilation short)."""

import time

import numpy as np
import pytest

from lsqlab.lab.gradient_accuracy import METHODS, TIMED_REPEATS, gradient_problem, measure
from lsqlab.widgets.adjoint_explorer import CURRENT_TRACE, AdjointExplorer, error_trace, time_trace

TOLERANCES = (1e-2, 1e-8, 1e-14)


@pytest.fixture(scope="module")
def timed_explorer():
    """The explorer and the seconds its first drawing took (compilations included)."""
    start = time.perf_counter()
    explorer = AdjointExplorer(rows=30, cols=12, tolerances=TOLERANCES)
    return explorer, time.perf_counter() - start


@pytest.fixture(scope="module")
def explorer(timed_explorer):
    return timed_explorer[0]


def test_drawn_times_exclude_compilation(timed_explorer):
    """First in the module, so the first drawing compiles. Before the fix each drawn time was one call
    including its compilation (the adjoint's 14 s against the unrolled 48 ms in notebook 02)."""
    explorer, first_drawing = timed_explorer
    drawn = sum(np.sum(explorer.figure.data[time_trace(m)].y) for m in METHODS) / 1e3
    assert drawn < 0.1 * first_drawing
    assert f"median of {TIMED_REPEATS} calls after compiling" in explorer.readout.value
    ticks = explorer.figure.layout.yaxis2.tickvals  # labelled time ticks: at most two a decade
    assert np.all(np.diff(np.log10(ticks)) > 0.45)


def test_gradients_converge_with_the_tolerance_at_full_rank():
    result = measure(gradient_problem(30, 12, 12), tolerances=TOLERANCES)
    assert result.error["adjoint"][-1] < 1e-10 and result.error["unrolled"][-1] < 1e-10
    assert 1e-12 < result.error["finite differences"][-1] < 1e-4  # truncation and rounding: h = 1e-6
    assert result.error["adjoint"][0] > 100 * result.error["adjoint"][-1]


def test_rank_deficient_needs_assume_full_rank_false_and_breaks_finite_differences():
    problem = gradient_problem(30, 12, 8)
    assert problem.rank == 8
    wrong = measure(problem, tolerances=(1e-14,))
    right = measure(problem, assume_full_rank=False, tolerances=(1e-14,))
    assert right.error["adjoint"][0] < 1e-8 < wrong.error["adjoint"][0]
    assert right.error["finite differences"][0] > 1  # A + hE has full rank: no derivative along E


def test_curves_are_the_measurement_and_the_marker_follows_the_tolerance(explorer):
    figure = explorer.figure
    for method in METHODS:
        assert list(figure.data[error_trace(method)].x) == list(TOLERANCES)
        assert np.all(np.asarray(figure.data[time_trace(method)].y) > 0)
    assert np.asarray(figure.data[error_trace("adjoint")].y)[-1] < 1e-10
    explorer.tol.value = 1e-14
    np.testing.assert_allclose(figure.data[CURRENT_TRACE].y,
                               [figure.data[error_trace(m)].y[-1] for m in METHODS])
    assert "1e-14" in explorer.readout.value


def test_lowering_the_rank_redraws_in_place(explorer):
    figure, before = explorer.figure, np.asarray(explorer.figure.data[error_trace("finite differences")].y)
    explorer.rank.value = 6
    after = np.asarray(explorer.figure.data[error_trace("finite differences")].y)
    assert explorer.figure is figure and after[-1] > 1 > before[-1]
    explorer.rank.value = 12


@pytest.mark.parametrize("control, value, words", [
    ("rank", 0, "rank must lie between"), ("rank", 13, "rank must lie between"), ("h", 0.0, "step h"),
    ("h", -1e-3, "step h"),
])
def test_bad_value_shows_a_message_and_keeps_the_figure(explorer, control, value, words):
    before = np.asarray(explorer.figure.data[error_trace("adjoint")].y)
    widget = getattr(explorer, control)
    good, widget.value = widget.value, value
    assert words in explorer.message.value
    np.testing.assert_array_equal(np.asarray(explorer.figure.data[error_trace("adjoint")].y), before)
    widget.value = good
    assert explorer.message.value == ""


def test_static_fallback_redraws_into_an_output():
    explorer = AdjointExplorer(rows=30, cols=12, tolerances=TOLERANCES, live=False)
    (before,) = explorer.static_view.outputs
    explorer.tol.value = 1e-2
    (after,) = explorer.static_view.outputs
    assert after is not before and "text/html" in after["data"]
