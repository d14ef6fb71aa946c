"""The tour in a real browser: JupyterLab runs it, the slider is moved by keyboard, the plot redraws."""

import pytest

from browser_helpers import (
    open_notebook,
    plotly_trace,
    press_slider,
    run_all_cells,
    save_screenshot,
    wait_for_trace_change,
)
from lsqlab.widgets.damping import FIT_TRACE

pytestmark = pytest.mark.browser


def test_tour_damping_slider_redraws_the_fit(lab_page, lab_server):
    page = lab_page
    try:
        open_notebook(page, lab_server, "notebooks/00_tour.ipynb")
        errors = run_all_cells(page)
        assert errors == [], f"the tour failed in JupyterLab: {errors}"

        page.wait_for_selector(".widget-slider", timeout=60_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        before = plotly_trace(page, FIT_TRACE)
        assert before, "the fitted curve is not drawn"

        press_slider(page, "ArrowRight", times=3)
        after = wait_for_trace_change(page, before, FIT_TRACE)
        assert len(after) == len(before)
    finally:
        save_screenshot(page, "tour")
