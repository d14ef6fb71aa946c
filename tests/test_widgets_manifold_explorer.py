"""The manifold explorer without a kernel: the drawn step parts and trajectories are the maths'."""

import time

import numpy as np
import pytest

from lsqlab.lab.geometry import MANIFOLDS, descend, step_parts
from lsqlab.widgets.manifold_explorer import (
    ARROW_TRACE, CONSTRAINT_TRACE, CURRENT_TRACE, TRAJECTORY_TRACE, ManifoldExplorer,
)


@pytest.fixture(scope="module")
def explorer():
    return ManifoldExplorer("circle", step=0.1, gamma=0.5, penalty=2.0, steps=20)


def points(figure, index):
    trace = figure.data[index]
    coords = [trace.x, trace.y] + ([trace.z] if hasattr(trace, "z") and trace.type == "scatter3d" else [])
    return np.stack([np.asarray(c, float) for c in coords], axis=1)


def drawn_vector(figure, part):
    segment = points(figure, ARROW_TRACE[part])
    return segment[1] - segment[0]


def test_drawn_tangent_step_is_orthogonal_to_the_drawn_normal(explorer):
    figure = explorer.figure
    tangent, normal = drawn_vector(figure, "tangent"), drawn_vector(figure, "normal")
    assert np.linalg.norm(tangent) > 1e-3 and np.linalg.norm(normal) > 1e-3
    assert abs(tangent @ normal) < 1e-10 * np.linalg.norm(tangent) * np.linalg.norm(normal)
    np.testing.assert_allclose(tangent + normal, drawn_vector(figure, "step"), atol=1e-12)
    # the normal correction is drawn from the tip of the tangent part
    np.testing.assert_allclose(points(figure, ARROW_TRACE["normal"])[0], points(figure, ARROW_TRACE["tangent"])[1])


def test_trajectories_are_the_three_methods(explorer):
    expected = descend(MANIFOLDS["circle"], np.array([-1.5, -1.2]), 20, 0.1, 0.5, 2.0).by_method()
    for method, index in TRAJECTORY_TRACE.items():
        np.testing.assert_allclose(points(explorer.figure, index), expected[method])
    assert not np.allclose(points(explorer.figure, TRAJECTORY_TRACE["penalty"]),
                           points(explorer.figure, TRAJECTORY_TRACE["null-space"]))


def test_moving_controls_updates_in_place(explorer):
    figure = explorer.figure
    before = points(figure, TRAJECTORY_TRACE["null-space"])
    explorer.gamma.value = 0.9
    after = points(figure, TRAJECTORY_TRACE["null-space"])
    assert explorer.figure is figure and not np.allclose(before, after)
    explorer.shown_step.value = 5
    np.testing.assert_allclose(points(figure, CURRENT_TRACE)[0], after[5])
    parts = step_parts(MANIFOLDS["circle"], after[5], 0.1, 0.9)
    np.testing.assert_allclose(drawn_vector(figure, "normal"), parts.normal, atol=1e-12)
    explorer.steps.value = 3
    assert explorer.shown_step.value == 3 and len(figure.data[TRAJECTORY_TRACE["penalty"]].x) == 4


@pytest.mark.parametrize("control, value, words", [
    ("step_size", 0.0, "step size must be a positive"),
    ("step_size", -0.5, "step size must be a positive"),
    ("start_x", 40.0, "far off"),
])
def test_bad_value_shows_a_message_and_keeps_the_figure(control, value, words):
    explorer = ManifoldExplorer("ellipse", steps=10)
    widget = explorer.start[0] if control == "start_x" else getattr(explorer, control)
    good, before = widget.value, points(explorer.figure, TRAJECTORY_TRACE["null-space"])
    widget.value = value
    assert words in explorer.message.value
    np.testing.assert_array_equal(points(explorer.figure, TRAJECTORY_TRACE["null-space"]), before)
    widget.value = good
    assert explorer.message.value == ""


def test_singular_start_shows_a_message():
    explorer = ManifoldExplorer("circle", steps=10)
    explorer.start[0].value, explorer.start[1].value = 0.0, 0.0
    assert "grad c = 0" in explorer.message.value
    explorer.start[0].value = -1.5
    explorer.manifold.value = "user curve"
    assert explorer.message.value == "" and "sin(4*x)" in explorer.figure.data[CONSTRAINT_TRACE].name


@pytest.fixture(scope="module")
def user_curve():
    return ManifoldExplorer("user curve", steps=10)


@pytest.mark.parametrize("expression, words", [
    ("x + 1/0", "1/0 is not a finite number"),  # escaped as ZeroDivisionError before
    ("x + 10**400", "exponent in ** must be a number"),  # OverflowError
    ("sin()", "sin takes exactly one argument"),  # TypeError
    ("*".join(["x"] * 3000), "characters long"),  # RecursionError
    ("x + 9**9**8", "exponent in ** must be a number"),  # blocked the kernel for more than 10 minutes
    ("x + os.system", "Attribute is not allowed"),
])
def test_typed_bad_expression_shows_a_message_within_a_second(user_curve, expression, words):
    figure, good = user_curve.figure, user_curve.expression.value
    drawn = points(figure, TRAJECTORY_TRACE["null-space"])
    start = time.perf_counter()
    user_curve.expression.value = expression
    assert time.perf_counter() - start < 1.0
    assert words in user_curve.message.value and "the plot shows the last valid manifold" in user_curve.message.value
    np.testing.assert_array_equal(points(figure, TRAJECTORY_TRACE["null-space"]), drawn)
    user_curve.gamma.value = 0.9 if user_curve.gamma.value != 0.9 else 0.3  # still answering: redraws
    assert not np.allclose(points(figure, TRAJECTORY_TRACE["null-space"]), drawn)
    user_curve.expression.value = good  # retyped: the cached manifold, no recompilation
    assert user_curve.message.value == "" and user_curve.expression.value == good


def test_large_step_reports_divergence_without_drawing_it():
    explorer = ManifoldExplorer("circle", step=0.1, penalty=50.0, steps=40)
    assert "diverges: penalty" in explorer.message.value
    drawn = points(explorer.figure, TRAJECTORY_TRACE["penalty"])
    assert np.isnan(drawn).any() and np.nanmax(np.abs(drawn)) < 1e3


def test_surfaces_use_the_3d_figure():
    explorer = ManifoldExplorer("sphere", steps=30)
    figure = explorer.figure
    assert figure is explorer.figures[3] and figure.data[CONSTRAINT_TRACE].type == "isosurface"
    assert explorer._boxes[2].layout.display == "none"
    tangent, normal = drawn_vector(figure, "tangent"), drawn_vector(figure, "normal")
    assert abs(tangent @ normal) < 1e-10 * np.linalg.norm(tangent) * np.linalg.norm(normal)
    final = points(figure, TRAJECTORY_TRACE["null-space"])[-1]
    assert abs(float(np.sum(final**2)) - 1) < 1e-5


def test_static_fallback_redraws_into_an_output():
    explorer = ManifoldExplorer("circle", steps=10, live=False)
    assert not explorer.is_live
    (before,) = explorer.static_views[2].outputs
    explorer.gamma.value = 0.1
    (after,) = explorer.static_views[2].outputs
    assert after is not before and "text/html" in after["data"]


def test_switching_to_a_user_surface_keeps_or_replaces_the_expression():
    explorer = ManifoldExplorer("user curve", steps=5)
    explorer.expression.value = "x**2 + y**2 - 2"
    explorer.manifold.value = "user surface"  # readable in 3-D too: kept (a cylinder)
    assert explorer.expression.value == "x**2 + y**2 - 2" and explorer.message.value == ""
    explorer.expression.value = "x**2 + y**2 + z**2 - 2"
    explorer.manifold.value = "user curve"  # z is unknown in 2-D: replaced by the default curve
    assert "z" not in explorer.expression.value and explorer.message.value == ""
    assert explorer.figure is explorer.figures[2]
