"""The manifold explorer in a real browser: JupyterLab runs 03_nullspace_geometry, a slider is moved by
keyboard, and the drawn null-space trajectory changes."""

import pytest

from browser_helpers import (
    open_notebook,
    plotly_trace,
    press_slider,
    run_all_cells,
    save_screenshot,
    wait_for_trace_change,
)
from lsqlab.widgets.manifold_explorer import TRAJECTORY_TRACE

pytestmark = pytest.mark.browser

NULL_SPACE = TRAJECTORY_TRACE["null-space"]


def test_manifold_explorer_steps_slider_redraws_the_trajectory(lab_page, lab_server):
    page = lab_page
    try:
        open_notebook(page, lab_server, "notebooks/03_nullspace_geometry.ipynb")
        errors = run_all_cells(page)
        assert errors == [], f"03_nullspace_geometry failed in JupyterLab: {errors}"

        page.wait_for_selector(".widget-slider", timeout=60_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        before = plotly_trace(page, NULL_SPACE, axis="x")  # plot 0: the explorer's 2-D figure
        assert before, "the null-space trajectory is not drawn"

        press_slider(page, "ArrowRight", times=3)  # slider 0: the number of steps
        after = wait_for_trace_change(page, before, NULL_SPACE, axis="x")
        assert len(after) > len(before)  # more steps, a longer trajectory
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    finally:
        save_screenshot(page, "manifold")
