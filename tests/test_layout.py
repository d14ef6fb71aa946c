"""Figures fit a 1400-px page: the layout helper wraps panels and moves legends; notebooks show through it."""

import re
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from lsqlab.widgets.adjoint_explorer import _accuracy_figure
from lsqlab.widgets.layout import MAX_COLUMNS, PAGE_WIDTH, fit_page, page_problems, panel_grid, show
from lsqlab.widgets.solver_explorer import _convergence_figure

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
METHODS = ("unconstrained", "energy", "penalty", "nullspace", "exact")


def five_panels_as_before() -> go.Figure:
    """Notebook 06's score figures before the fix: five panels in a row, 1250 px wide."""
    figure = make_subplots(rows=1, cols=5, subplot_titles=METHODS, horizontal_spacing=0.02)
    for col in range(1, 6):
        figure.add_scatter(x=[0, 1], y=[1, 0], row=1, col=col, showlegend=False)
    return figure.update_layout(height=330, width=1250)


def test_page_problems_names_a_wide_figure_and_a_long_row():
    problems = page_problems(five_panels_as_before())
    assert any("1250 px exceeds" in p for p in problems) and any("5 panels in a row" in p for p in problems)
    with pytest.raises(ValueError, match="does not fit a 1400-px page"):
        show(five_panels_as_before())


def test_panel_grid_wraps_five_panels_into_rows_of_three():
    figure, cells = panel_grid(METHODS)
    assert cells == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    for (row, col), method in zip(cells, METHODS):
        figure.add_scatter(x=[0, 1], y=[1, 0], name=method, row=row, col=col)
    assert figure.layout.width is None and [a.text for a in figure.layout.annotations] == list(METHODS)
    assert page_problems(figure) == ["a vertical legend beside the panels: lay it out under them with fit_page"]
    fit_page(figure)
    assert page_problems(figure) == []
    legend = figure.layout.legend
    assert legend.orientation == "h" and legend.yref == "container" and legend.y == 0
    assert figure.layout.margin.b > 60  # room for the tick labels and the legend under them
    with pytest.raises(ValueError, match="max_columns"):
        panel_grid(METHODS, max_columns=MAX_COLUMNS + 1)


def test_fit_page_drops_a_width_beyond_the_page_and_keeps_one_within():
    wide, narrow = go.Figure(layout=dict(width=PAGE_WIDTH + 1)), go.Figure(layout=dict(width=700))
    assert fit_page(wide).layout.width is None and fit_page(narrow).layout.width == 700


def test_heat_maps_and_single_traces_need_no_legend():
    figure, cells = panel_grid(("a", "b", "c"))
    for row, col in cells:
        figure.add_heatmap(z=[[0, 1], [1, 0]], showscale=col == 3, row=row, col=col)
    assert page_problems(figure) == []
    assert page_problems(go.Figure(go.Scatter(x=[0], y=[0]))) == []


def test_explorer_figures_fit():
    for figure in (_convergence_figure(), _accuracy_figure()):
        assert page_problems(figure) == []


def test_notebooks_show_every_static_figure_through_the_page_check():
    """Under nbmake every notebook runs, so each figure shown with ``show`` is checked there."""
    for path in sorted(NOTEBOOKS.glob("0*.py")):
        bypassing = [line for line in path.read_text().splitlines() if re.search(r"\w\.show\(\)", line)]
        assert not bypassing, f"{path.name} shows a figure without the page check: {bypassing}"


def test_tour_leads_to_every_notebook():
    tour = (NOTEBOOKS / "00_tour.py").read_text()
    others = sorted(p.stem for p in NOTEBOOKS.glob("0*.py") if p.stem != "00_tour")
    assert len(others) == 7
    for number, stem in enumerate(others, start=1):
        assert re.search(rf"^# {number}\. \[`{stem}`\]\({stem}\.ipynb\): \S", tour, re.MULTILINE), stem
