"""Figures that fit a notebook page 1400 px wide: panels wrapped, legends under the panels, no fixed width.

At 1400 px JupyterLab, with its file browser open, leaves an output area about ``PAGE_WIDTH`` px wide;
a figure with a fixed width beyond it is cut (its last panel and colour bar fall off the right edge).
A figure with no fixed width fills the output area, and plotly then reserves room for colour bars in
the right margin. The rules, which :func:`page_problems` checks and :func:`show` enforces:

  * no ``layout.width`` above ``PAGE_WIDTH`` (preferably none),
  * at most ``MAX_COLUMNS`` panels in a row, each then at least ``MIN_PANEL_WIDTH`` px wide
    (:func:`panel_grid` wraps longer rows, three panels a row by default),
  * a legend, when one is shown, laid out horizontally in a band under the panels (:func:`fit_page`),
    so that it takes no width from them and covers no title.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

PAGE_WIDTH = 1000  # px: the output area of a notebook on a 1400-px page (JupyterLab, side bar open)
MIN_PANEL_WIDTH = 240  # px
MAX_COLUMNS = PAGE_WIDTH // MIN_PANEL_WIDTH  # 4
COLUMNS = 3  # panels a row that panel_grid makes by default
PANEL_HEIGHT = 300  # px per row of panels, titles included
LEGEND_ROW = 26  # px per line of a horizontal legend
AXIS_BAND = 60  # px under the panels for tick labels and axis titles
NARROW_WIDTH = 700  # px: the width assumed when estimating how many lines a legend wraps into
LEGEND_BY_DEFAULT = {"scatter", "scattergl", "scatter3d", "bar", "histogram", "box", "violin"}  # others: opt in


def panel_grid(titles: Sequence[str], *, max_columns: int = COLUMNS, panel_height: int = PANEL_HEIGHT,
               **subplot_options: Any) -> tuple[go.Figure, list[tuple[int, int]]]:
    """``make_subplots`` for ``len(titles)`` panels, at most ``max_columns`` a row, and the (row, col)
    of each panel in order. Height: rows x ``panel_height``; no fixed width."""
    if not titles:
        raise ValueError("panel_grid needs at least one panel title")
    if not 1 <= max_columns <= MAX_COLUMNS:
        raise ValueError(f"max_columns must lie in [1, {MAX_COLUMNS}], got {max_columns}")
    columns = min(max_columns, len(titles))
    rows = math.ceil(len(titles) / columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=list(titles), **subplot_options)
    figure.update_layout(height=rows * panel_height + AXIS_BAND, margin=dict(t=50, b=AXIS_BAND))
    return figure, [(i // columns + 1, i % columns + 1) for i in range(len(titles))]


def fit_page(figure: go.Figure) -> go.Figure:
    """``figure`` (changed in place) with its legend horizontal in a band at the bottom, the bottom
    margin grown by the legend's estimated lines, and a fixed width above ``PAGE_WIDTH`` removed."""
    if figure.layout.width is not None and figure.layout.width > PAGE_WIDTH:
        figure.layout.width = None
    entries = _legend_entries(figure)
    if entries:
        lines = _legend_lines(entries)
        bottom = AXIS_BAND + LEGEND_ROW * lines
        figure.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom",
                                         yref="container"),
                             margin=dict(b=max(bottom, figure.layout.margin.b or 0)))
        if figure.layout.height is not None:
            figure.layout.height += LEGEND_ROW * lines
    return figure


def page_problems(figure: go.Figure) -> list[str]:
    """What keeps ``figure`` from fitting a 1400-px page (empty: it fits)."""
    problems = []
    width = figure.layout.width
    if width is not None and width > PAGE_WIDTH:
        problems.append(f"fixed width {width:g} px exceeds the page's {PAGE_WIDTH} px: leave the width unset")
    widest = max(_columns_per_row(figure).values(), default=1)
    if widest > MAX_COLUMNS:
        problems.append(f"{widest} panels in a row: at most {MAX_COLUMNS} (wrap them with panel_grid)")
    if _legend_entries(figure) and figure.layout.legend.orientation != "h":
        problems.append("a vertical legend beside the panels: lay it out under them with fit_page")
    return problems


def show(figure: go.Figure) -> None:
    """Display ``figure`` after checking that it fits the page; ValueError naming what does not."""
    problems = page_problems(figure)
    if problems:
        title = figure.layout.title.text or "a figure"
        raise ValueError(f"{title!r} does not fit a 1400-px page: " + "; ".join(problems))
    figure.show()


def _legend_entries(figure: go.Figure) -> list[str]:
    """Names the legend shows (plotly shows a legend for two or more such traces unless told otherwise)."""
    if figure.layout.showlegend is False:
        return []
    shown = [trace for trace in figure.data if getattr(trace, "showlegend", None)
             or (getattr(trace, "showlegend", False) is None and trace.type in LEGEND_BY_DEFAULT)]
    if len(shown) < 2 and not any(trace.showlegend for trace in shown):
        return []
    return [str(trace.name or "") for trace in shown]


def _legend_lines(names: list[str]) -> int:
    """Lines a horizontal legend of ``names`` wraps into at ``NARROW_WIDTH`` px (about 7 px a letter
    plus 45 px of symbol and gap per entry)."""
    return max(1, math.ceil(sum(45 + 7 * len(name) for name in names) / NARROW_WIDTH))


def _columns_per_row(figure: go.Figure) -> Counter:
    """Number of 2-D panels (x axes) on each row, a row being the y domain their x axes anchor to."""
    layout = figure.to_plotly_json()["layout"]
    rows: Counter = Counter()
    for key, axis in layout.items():
        if key.startswith("xaxis") and isinstance(axis, dict):
            y_axis = layout.get("yaxis" + axis.get("anchor", "y")[1:], {})
            rows[tuple(y_axis.get("domain", (0, 1)))] += 1
    return rows
