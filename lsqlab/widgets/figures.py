"""Figure plumbing shared by the widgets: a live ``FigureWidget`` where it works, else a static redraw.

In JupyterLab 4 and Notebook 7 a widget's figure is a plotly ``FigureWidget`` updated in place. Where
that cannot work (plotly's widget needs ``anywidget``; Colab does not render it) the same figure is
kept as a plain ``go.Figure`` and redrawn as a static plotly output inside an ``ipywidgets.Output``.
"""

from __future__ import annotations

import json
import sys

import ipywidgets as widgets
import plotly.graph_objects as go
import plotly.io as pio


def live_or_static(figure: go.Figure, live: bool | None) -> tuple[go.Figure, widgets.Output | None]:
    """``(FigureWidget, None)`` where a live figure works, else ``(figure, Output for its redraws)``.

    ``live``: True tries the live figure, False forces the static redraw, None: live outside Colab.
    """
    if live is None:
        live = "google.colab" not in sys.modules
    if live:
        try:
            return go.FigureWidget(figure), None
        except ImportError:  # plotly >= 6 builds FigureWidget on anywidget
            pass
    return figure, widgets.Output()


def static_output(figure: go.Figure) -> dict:
    """A display-data output of ``figure``: plotly's mime type for Jupyter, HTML for Colab."""
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            "application/vnd.plotly.v1+json": json.loads(pio.to_json(figure)),
            "text/html": pio.to_html(figure, include_plotlyjs="cdn", full_html=False),
        },
    }


def redraw_static(figure: go.Figure, static_view: widgets.Output | None) -> None:
    """After an in-place update: re-render ``figure`` into ``static_view`` (nothing to do when live)."""
    if static_view is not None:
        static_view.outputs = (static_output(figure),)


def message_html(text: str) -> str:
    """A red HTML line for a widget's message area ("" clears it)."""
    return f'<span style="color:#b00020">{text}</span>' if text else ""
