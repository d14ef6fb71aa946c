"""Every widget in a real browser: each notebook with widgets runs with Run All in JupyterLab, and the
tour and notebook 03 (three of the five widgets, 2-D and 3-D figures; every widget draws through the same
lsqlab.widgets.figures.live_or_static) in Notebook 7 too (one server, one kernel per notebook). Every
widget figure must be drawn with the kernel's data on first display, before any control moves, then
again after a control moves (keys in JupyterLab, a mouse drag in Notebook 7), after the manifold
explorer switches to 3-D surfaces, and after the saved notebook is reloaded. Every live figure must import
plotly's bundle from the server (lsqlab_jupyter). Screenshots of every widget at every stage, and each page's
console, go to ``artifacts/browser/``."""

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import lsqlab.widgets
import lsqlab_jupyter
from lsqlab_jupyter.bundle import plotly_bundle, versioned_route
from browser_helpers import (
    FRONTENDS,
    SCREENSHOTS,
    VIEWPORT,
    drag_slider,
    drawn_traces,
    kernel_figure_modules,
    open_notebook,
    press_slider,
    run_all_cells,
    save_and_reload,
    screenshot_cell,
    wait_for_change,
    wait_until_drawn,
    widget_cells,
)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_NOTEBOOKS = {"00_tour": 1, "01_values": 1, "02_gradients": 1, "03_nullspace_geometry": 2}  # widgets shown
SURFACES = ("sphere", "torus")  # the manifold explorer's 3-D choices, drawn in WebGL
NOTEBOOK7 = ("00_tour", "03_nullspace_geometry")  # Notebook 7 as well: 3 of the 5 widgets, 2-D and 3-D figures
CHECKS = [(name, frontend) for name in WIDGET_NOTEBOOKS for frontend in FRONTENDS
          if frontend == "lab" or name in NOTEBOOK7]


def test_every_notebook_with_widgets_is_checked_in_the_browser():
    uses_widgets = {path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.py")
                    if any(f"{widget}(" in path.read_text() for widget in lsqlab.widgets.__all__)}
    assert uses_widgets == set(WIDGET_NOTEBOOKS)


def test_the_server_serves_plotly_widget_bundle_to_logged_in_pages_only(lab_server):
    """lsqlab_jupyter's route: the bundle with the token (the pages' cookie), nothing without it."""
    route = f"{lab_server.base_url}/{lsqlab_jupyter.ROUTE}"
    with urllib.request.urlopen(f"{route}?token={lab_server.token}") as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert response.read() == plotly_bundle().read_bytes()
    no_redirects = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as refused:
        no_redirects.open(route)
    assert refused.value.code in (302, 403)  # to the login page, or forbidden


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def has(page, cell: int, selector: str) -> bool:
    return page.locator(f'[data-lsqlab-cell="{cell}"] {selector}').count() > 0


def run_and_check_first_render(page, server, path: str, frontend: str, name: str) -> list[int]:
    """Open ``path`` in ``frontend``, Run All, and check that every widget is drawn; return its cells."""
    open_notebook(page, server, path, frontend)
    errors = run_all_cells(page)
    assert errors == [], f"{path} failed in {frontend}: {errors}"
    cells = widget_cells(page)
    assert len(cells) == WIDGET_NOTEBOOKS[name], f"{frontend} shows widgets in cells {cells}"
    modules = kernel_figure_modules(page)
    served = lsqlab_jupyter.figure_module(versioned_route())
    assert modules and all(module == served for module in modules), (
        "the kernel's live figures do not import plotly's bundle from the server (lsqlab_jupyter)")
    try:
        wait_until_drawn(page, cells)
    finally:
        for cell in cells:
            screenshot_cell(page, cell, f"{name}-{frontend}-first-cell{cell}")
    return cells


def move_and_check(page, cell: int, frontend: str, name: str) -> None:
    """Move the widget's first slider (keys in JupyterLab, a drag in Notebook 7); its figure must change."""
    before = drawn_traces(page, cell)
    if frontend == "lab":
        press_slider(page, cell, "ArrowRight")
    else:
        drag_slider(page, cell)
    try:
        wait_for_change(page, cell, before)
        wait_until_drawn(page, [cell])
    finally:
        screenshot_cell(page, cell, f"{name}-{frontend}-moved-cell{cell}")


def choose_surface(page, cell: int, surface: str, name: str) -> None:
    """Pick a 3-D surface in the manifold explorer; its WebGL figure must show it with the paths."""
    page.locator(f'[data-lsqlab-cell="{cell}"] .widget-dropdown select').first.select_option(surface)
    try:
        page.wait_for_timeout(500)
        deadline_checks = 240  # the kernel computes the surface and the paths (seconds), then draws once
        while not any(trace[1] == surface for traces in drawn_traces(page, cell) for trace in traces):
            deadline_checks -= 1
            assert deadline_checks > 0, f"the explorer never drew the {surface}"
            page.wait_for_timeout(250)
        wait_until_drawn(page, [cell])
    finally:
        screenshot_cell(page, cell, f"{name}-lab-{surface}-cell{cell}")


@pytest.mark.browser
@pytest.mark.parametrize("name, frontend", CHECKS, ids=[f"{name}-{frontend}" for name, frontend in CHECKS])
def test_widgets_draw_on_first_display_and_follow_their_controls(name, frontend, chromium, lab_server):
    path = f"notebooks/{name}.ipynb"
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(f"{time.monotonic():.1f} {message.type}: {message.text}"))
    try:
        cells = run_and_check_first_render(page, lab_server, path, frontend, name)
        for cell in cells:
            if has(page, cell, ".widget-slider"):
                move_and_check(page, cell, frontend, name)
        if frontend == "lab":
            for cell in cells:
                if has(page, cell, ".widget-dropdown select option[value='sphere']"):
                    for surface in SURFACES:
                        choose_surface(page, cell, surface, name)
            save_and_reload(page)
            try:
                wait_until_drawn(page, cells)
            finally:
                for cell in cells:
                    screenshot_cell(page, cell, f"{name}-lab-reloaded-cell{cell}")
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"{name}-{frontend}-console.log").write_text("\n".join(console))
        context.close()
